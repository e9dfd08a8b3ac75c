"""Text of the broad training set (:mod:`mrr_jax.data.broad`): plain prose out of Markdown, reST
and plain-text files, their sections and changelog items, and the (query, passage) pairs made
from them mechanically.

Three ways to make a query (the ``query kind`` of a pair):

- ``heading``: a section heading (Markdown ``#``, a reST or setext underline, its numbering
  dropped) for the prose of that section itself (subsections excluded);
- ``first_sentence``: the first sentence of a paragraph, changelog item or section without a
  usable heading, for the rest of it;
- ``summary``: a docstring's summary line for the rest of the docstring (PEP 257; made in
  :mod:`mrr_jax.data.broad_sources` with the example set's parser).

Code (fenced or indented blocks, doctest lines, reST directives), tables, link targets, URLs and
markup are dropped; texts are whitespace-collapsed. Nothing here reads a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s*([=\-~^\"'`#*+_.:])\1{2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BULLET = re.compile(r"^(\s*)(?:[*+\-o]|\d{1,2}[.)])\s+(?=\S)")
_MARK = re.compile(r"^(\s*)[*+\-]\s+(?=\S)")  # a list item's mark (numbers are kept)
_DIRECTIVE = re.compile(r"^\s*\.\.\s+(?:[\w:-]+::|_[^:]+:|\[[^]]+\]|\|)")
_LINKDEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+")
_TABLE = re.compile(r"^\s*(?:\||\+[-=+]{3,}|={3,}\s+={3,})")
_DEBIAN_HEADER = re.compile(r"^\S.*\(.*\).*;.*urgency=")
_TRAILER = re.compile(r"^\s*--\s+\S.*<[^>]*>")
_BUGREF = re.compile(r"\(?\b(?:Closes|LP|closes|Fixes|fixes):?\s*#\d+(?:,\s*#?\d+)*\)?\.?")
_INLINE = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # [text][ref]
    (re.compile(r"`([^`<]+?)\s*<[^>]+>`_{1,2}"), r"\1"),  # `text <url>`_
    (re.compile(r":[\w:.+-]+:`~?([^`]+)`"), r"\1"),  # :role:`text`
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # HTML tags
    (re.compile(r"https?://\S+|www\.\S+"), ""),  # URLs
    (re.compile(r"\{[\w:-]+\}(?=`)"), ""),  # MyST roles: {ref}`text`
    (re.compile(r"\(merge [0-9a-f]{7,} [^)]*\)\.?"), ""),  # git release notes' merge notes
    (re.compile(r"\s\*[A-Z][^*]{1,60}\*\s*$"), ""),  # a trailing *Author Name* credit
    (re.compile(r"`+|\*\*|__"), ""),  # code and emphasis marks
    (re.compile("[\U00010000-\U0010ffff\ufffd\u2600-\u27bf\ufe0f]"), ""),  # emoji
    (re.compile(r"(?<!\w)\\(?=\S)"), ""),  # reST escapes
]
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|resp|Dr|Mr|Mrs|Ms|No|al|viz|Fig|"
                     r"Sec|Eq)|\b[A-Za-z]|\.\.)\.$")
_SENTENCE_END = re.compile(r"[.!?][)\]\"']?(?=\s+[\"'(\[]?[A-Z0-9])")
_NUMBERED = re.compile(r"^(?:[0-9]+|[A-Z])\.\s+([A-Z][^.!?]{2,80}\.)\s+(?=\S)")
_EXAMPLES = re.compile(r"\b(?:Examples?|Usage [Ee]xamples?)\s*(?:[-=~^]{3,}|:)|>>>")
_RULER = re.compile(r"[-=~^*+#]{3,}")
_NUMBER = re.compile(r"^(?:(?:Chapter|Section|Appendix|Part)\s+)?(?:[0-9]+|[A-Z]|[ivxIVX]+)"
                     r"(?:\.[0-9]+)*[.)]?\s+")


def clean(text: str) -> str:
    """Inline markup, HTML tags and URLs dropped, whitespace collapsed."""
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def first_sentence(text: str) -> str:
    """The text up to its first sentence end: ``.``, ``!`` or ``?`` (a closing bracket or
    quote may follow) before a space and a capital, digit or opening bracket, not after a
    common abbreviation ("e.g.", "etc.") or a single letter."""
    for m in _SENTENCE_END.finditer(text):
        head = text[:m.end()]
        if not _ABBREV.search(head.rstrip(")]\"'")):
            return head
    return text


def numbered_heading(paragraph: str) -> tuple[str, str] | None:
    """``(title, rest)`` of a paragraph that opens with a numbered run-in heading, as in
    licenses and specifications ("2. Grant of Copyright License. Subject to ..."); else None."""
    m = _NUMBERED.match(paragraph)
    if m is None:
        return None
    return m.group(1).rstrip("."), paragraph[m.end():].strip()


def docstring_passage(text: str) -> str:
    """The rest of a docstring as prose: cut before its examples (a numpydoc or Google
    ``Examples`` section, the first doctest), rulers and markup dropped."""
    m = _EXAMPLES.search(text)
    if m is not None:
        text = text[:m.start()]
    return clean(_RULER.sub(" ", text))


def _words(text: str) -> int:
    return len(text.split())


def is_prose(text: str) -> bool:
    """Mostly words (not code, numbers or symbols): at least 60% of the tokens hold a letter
    and at most 10% look like code (``a=b``, ``f(x)``, ``{``, ``;``)."""
    tokens = text.split()
    if not tokens:
        return False
    letters = sum(any(c.isalpha() for c in t) for t in tokens)
    code = sum(bool(re.search(r"[{};=<>$]|\w\(|^[#@]", t)) for t in tokens)
    return letters >= 0.6 * len(tokens) and code <= 0.1 * len(tokens)


@dataclass(slots=True)
class Block:
    """A section of a document: its heading ("" before the first) and prose paragraphs."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    level: int = 0

    @property
    def query(self) -> str:
        """The heading without its numbering ("2.1. Setup" -> "Setup") and trailing colon."""
        return _NUMBER.sub("", self.heading, count=1).rstrip(":").strip()

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)


def _is_underline(line: str, title: str) -> bool:
    return bool(_RULE.match(line)) and len(line.strip()) >= max(3, int(0.6 * len(title.strip())))


def _drop_code(lines: list[str]) -> list[str]:
    """Lines outside fenced code, reST literal blocks (after ``::``) and directives; those
    become blank lines, so paragraphs stay apart."""
    out: list[str] = []
    fence = ""
    literal = -1  # indent of the line that opened a literal block or directive
    for raw in lines:
        line = raw.rstrip()
        m = _FENCE.match(line)
        if fence:
            fence = "" if m and m.group(1) == fence else fence
            out.append("")
            continue
        if m:
            fence = m.group(1)
            out.append("")
            continue
        indent = len(line) - len(line.lstrip())
        if literal >= 0 and (not line.strip() or indent > literal):
            out.append("")
            continue
        literal = -1
        if _DIRECTIVE.match(line) or _LINKDEF.match(line) or _TABLE.match(line) \
                or line.lstrip().startswith((">>>", "... ", "$ ", "% ")):
            literal = indent if _DIRECTIVE.match(line) else -1
            out.append("")
            continue
        if line.endswith("::"):
            literal = indent
            line = line[:-1]
        out.append(line)
    return out


def _paragraphs(lines: list[str]) -> list[str]:
    """Prose paragraphs of ``lines`` (blank-line separated; deep-indented code-like blocks and
    non-prose dropped)."""
    out, buf = [], []
    for line in [*lines, ""]:
        if line.strip():
            buf.append(line)
            continue
        if buf:
            indented = all(len(b) - len(b.lstrip()) >= 4 for b in buf)
            text = clean(" ".join(_MARK.sub(r"\1", b, count=1) for b in buf))
            if text and is_prose(text) and not (indented and not _BULLET.match(buf[0])):
                out.append(text)
            buf = []
    return out


def sections(text: str) -> list[Block]:
    """The sections of a Markdown, reST or plain-text document, in order: ATX headings,
    underlined (setext / reST) headings and overlined reST titles start a section."""
    lines = _drop_code(text.replace("\r\n", "\n").split("\n"))
    blocks = [Block("")]
    body: list[str] = []
    underlines: list[str] = []  # reST levels are the order in which underline styles appear
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        atx = _ATX.match(line)
        if atx is not None and not _RULE.match(line):
            heading, level, skip = clean(atx.group(2)), len(atx.group(1)), 1
        elif line.strip() and not _RULE.match(line) and _is_underline(nxt, line) \
                and not _BULLET.match(line) and len(line) - len(line.lstrip()) < 4:
            char = nxt.strip()[0]
            if char not in underlines:
                underlines.append(char)
            heading, level, skip = clean(line), underlines.index(char) + 1, 2
        else:
            if not _RULE.match(line):
                body.append(line)
            i += 1
            continue
        blocks[-1].paragraphs = _paragraphs(body)
        blocks.append(Block(heading, level=level))
        body = []
        i += skip
    blocks[-1].paragraphs = _paragraphs(body)
    return [b for b in blocks if b.heading or b.paragraphs]


def changelog_items(text: str) -> Iterator[str]:
    """The entries of a changelog (Debian ``changelog.Debian``, upstream ``NEWS`` /
    ``CHANGES`` / release notes): each bullet item with its continuation and sub-items, and
    each plain paragraph; release headers, maintainer trailers and bug numbers dropped."""
    buf: list[str] = []
    indent = -1

    def flush() -> Iterator[str]:
        if buf:
            item = clean(_BUGREF.sub("", " ".join(buf)))
            if item and is_prose(item):
                yield item
        buf.clear()

    for raw in _drop_code(text.replace("\r\n", "\n").split("\n")):
        line = raw.rstrip()
        bullet = _BULLET.match(line)
        if not line.strip() or _DEBIAN_HEADER.match(line) or _TRAILER.match(line) \
                or _RULE.match(line) or _ATX.match(line):
            if not line.strip() and indent >= 0:
                continue  # a blank line inside a bullet list keeps the item open
            yield from flush()
            indent = -1
            continue
        if bullet and (indent < 0 or len(bullet.group(1)) <= indent):
            yield from flush()
            indent = len(bullet.group(1))
            line = line[bullet.end():]
        elif indent >= 0 and len(line) - len(line.lstrip()) <= indent and not bullet:
            yield from flush()  # a line back at the bullet's indent: a new paragraph
            indent = -1
        elif bullet:
            line = line[bullet.end():]
        buf.append(line.strip())
    yield from flush()


def split_first(text: str, *, min_query_words: int = 4, max_query_words: int = 40,
                min_words: int = 15) -> tuple[str, str] | None:
    """``(first sentence, rest)`` of a text whose first sentence is a usable query (it ends
    with ``.``, holds ``min_query_words``..``max_query_words`` words and begins with a letter)
    and whose rest has at least ``min_words`` words; else None."""
    query = first_sentence(text)
    rest = text[len(query):].strip()
    if not query.endswith(".") or not query[:1].isalpha() \
            or query.count("(") != query.count(")") \
            or not min_query_words <= _words(query) <= max_query_words \
            or _words(rest) < min_words or not is_prose(query):
        return None
    return query, rest
