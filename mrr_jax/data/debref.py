"""A transfer set: section headings of the Debian Reference as queries, its sections as passages.

Evaluation only: this set has one split, ``test``, and no training rows. It is never used for
training or tuning -- it measures how a re-ranker trained on the example set (Python
docstrings, :mod:`mrr_jax.data.example`) transfers to another text domain.

Text: the *Debian Reference* by Osamu Aoki (English original, GPL), a system administration
guide for Debian users: shells, package management, boot, networking, data management, ...
It ships as the Debian package ``debian-reference-en`` (pinned: version :data:`PINNED`,
Debian 12 "bookworm"), whose DocBook HTML lies in ``/usr/share/debian-reference/*.en.html``::

    apt-get install -y --no-install-recommends debian-reference-en=2.100

``--source PATH`` points at another folder of those files (or one file).

How: every ``*.en.html`` file but ``index.en.html`` is parsed with :mod:`html.parser`, in book
order (preface, chapters, appendix). Each DocBook section (``<div class="section">``, any
depth) gives one (query, passage) pair: the query is the section's heading without its number
("1.2.7. Links" -> "Links"); the passage is the prose of the section itself -- the ``<p>``
paragraphs of its body, notes and list items included, its subsections excluded -- without
code listings (``<pre>``), data tables, figures, tables of contents, footnotes and their
markers. Texts are whitespace-collapsed. A section is dropped (``stats.json`` counts each
reason) when its passage has fewer than ``--min-words`` words (default 20), its heading is
generic ("Introduction", "Examples", "Prerequisites", ...), has fewer than 2 or more than 20
words, is used more than once in the book (an ambiguous query), its passage repeats another
section's, or the heading appears verbatim (case and punctuation aside) in the passage's first
sentence (a trivial match). Passages are cut to the first ``--max-words`` words (default 200;
the number cut is in ``stats.json``). Exactly one passage is relevant to each query: the one of
its own section. The document id is the section's HTML anchor (``_the_shell_prompt``), the
query id ``q:`` + that anchor; the title is the chapter's ("GNU/Linux tutorials"), never the
section heading (that would give the answer away).

Output (``python -m mrr_jax.data.debref OUT``), the layout of :mod:`mrr_jax.data.example`:

- ``OUT/corpus.jsonl``, ``OUT/queries.jsonl``, ``OUT/qrels/test.tsv`` (BEIR); the corpus holds
  every kept passage, in book order.
- ``OUT/bm25/test.trec``: BM25 (the example set's: ``bm25s``, PyStemmer English stemming,
  English stopwords) over title + text, top 100 per query, zero-score hits dropped.
- ``OUT/stats.json``: source, package and version (the one the text states), counts, drops by
  reason, cut passages, average lengths in words, query/passage word overlap, BM25 RR@10 /
  nDCG@10 / R@100.

Deterministic: the same source files give byte-identical output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from mrr_jax.data import beir, trec
from mrr_jax.data.example import METRICS, _bm25, _mean, _words, bm25_run
from mrr_jax.data.fileio import PathLike, atomic_write, check_output_folder
from mrr_jax.data.metrics import evaluate_run, format_table
from mrr_jax.data.records import Doc, Qrels

PACKAGE = "debian-reference-en"
PINNED = "2.100"
DEFAULT_SOURCE = Path("/usr/share/debian-reference")
INSTALL = f"apt-get install -y --no-install-recommends {PACKAGE}={PINNED}"
SPLIT = "test"

#: Headings too generic to be a query (compared lower-case, without punctuation and a leading
#: article).
GENERIC = frozenset((
    "introduction", "overview", "examples", "example", "summary", "conclusion", "conclusions",
    "notes", "note", "tips", "tip", "references", "reference", "further reading",
    "more readings", "see also", "miscellaneous", "misc", "other", "others", "basics", "usage",
    "installation", "configuration", "setup", "background", "preface", "appendix", "disclaimer",
    "prerequisites", "conventions", "acknowledgements", "acknowledgments", "credits", "history",
    "motivation", "details", "general", "getting started", "quick start", "troubleshooting",
    "faq", "warning", "caution"))

#: Elements whose content is no prose: code, data tables, figures, navigation, footnotes.
_SKIP_TAGS = frozenset({"pre", "script", "style", "head", "sup"})
_SKIP_CLASSES = frozenset({"table", "informaltable", "figure", "informalfigure", "toc",
                           "list-of-tables", "footnotes", "navheader", "navfooter", "title",
                           "mediaobject", "screen", "programlisting"})
_SECTION_CLASSES = frozenset({"section", "chapter", "preface", "appendix"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_NUMBER = re.compile(r"^(?:(?:Chapter|Appendix)\s+)?[A-Z0-9]+(?:\.[0-9]+)*\.\s+")
_VERSION = re.compile(r"Debian Reference \(version ([0-9][^)\s]*)\)")
_STOP = frozenset("a an and are as at by for from how in is it its of on or the to with".split())


class MissingSource(Exception):
    """The source files are not there; the message says what to install."""


@dataclass(slots=True)
class Section:
    """One section of the book: its anchor, chapter title, heading and own prose."""

    anchor: str
    chapter: str = ""
    heading: str = ""
    paragraphs: list[str] = field(default_factory=list)
    top: bool = False  # a chapter, preface or appendix (no query of its own)

    @property
    def query(self) -> str:
        return _NUMBER.sub("", self.heading, count=1)

    @property
    def passage(self) -> str:
        return " ".join(" ".join(self.paragraphs).split())


class _BookParser(HTMLParser):
    """Sections of one DocBook HTML file, in document order (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # tag, opens a section, skipped
        self.open: list[Section] = []
        self.sections: list[Section] = []
        self.skip = 0
        self.buf: list[str] | None = None  # text of the heading or paragraph being read
        self.heading = False  # buf is a heading (else a paragraph)
        self.depth = 0  # the stack depth that holds the element buf reads

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID or tag == "a":  # <a id=...> in a heading names its section
            self.handle_startendtag(tag, attrs)
            if tag != "a":
                return
        attr = dict(attrs)
        classes = set((attr.get("class") or "").split())
        opens = tag == "div" and bool(classes & _SECTION_CLASSES)
        if opens:
            section = Section(anchor=attr.get("id") or "", top="section" not in classes)
            if self.open and not section.top:
                section.chapter = self.open[0].chapter
            self.open.append(section)
            self.sections.append(section)
        skip = tag in _SKIP_TAGS or (bool(classes & _SKIP_CLASSES) and tag not in _HEADINGS)
        self.stack.append((tag, opens, skip))
        self.skip += skip
        if self.skip or not self.open or self.buf is not None:
            return
        heading = tag in _HEADINGS and "title" in classes and not self.open[-1].heading
        if heading or tag == "p":
            self.buf, self.heading, self.depth = [], heading, len(self.stack)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        anchor = dict(attrs).get("id")
        if tag == "a" and anchor and self.heading and not self.open[-1].anchor:
            self.open[-1].anchor = anchor

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or all(t != tag for t, _, _ in self.stack):
            return  # a stray end tag
        while self.stack:
            t, opens, skip = self.stack.pop()
            if len(self.stack) < self.depth:
                self._flush()
            self.skip -= skip
            if opens:
                self.open.pop()
            if t == tag:
                break

    def _flush(self) -> None:
        """The heading or paragraph read ends: give it to the innermost open section."""
        text = " ".join("".join(self.buf or ()).split())
        section = self.open[-1]
        if self.heading:
            section.heading = text
            if section.top:
                section.chapter = section.query
        elif text:
            section.paragraphs.append(text)
        self.buf, self.heading, self.depth = None, False, 0

    def handle_data(self, data: str) -> None:
        if self.buf is not None and not self.skip:
            self.buf.append(data)


def source_files(source: PathLike | None = None) -> list[Path]:
    """The book's HTML files in book order (preface, chapters, appendices); ``source`` is a
    folder (its ``*.en.html`` but ``index.en.html``; ``*.html`` if it has none) or one file.

    Raises :class:`MissingSource` (saying what to install) when there are none.
    """
    path = DEFAULT_SOURCE if source is None else Path(source)
    files: list[Path] = []
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [f for f in path.glob("*.en.html") if f.name != "index.en.html"] or \
            [f for f in path.glob("*.html") if not f.name.startswith("index.")]
    if not files:
        where = ("is not installed" if source is None
                 else "has no HTML files" if path.exists() else "does not exist")
        raise MissingSource(f"the Debian Reference (English HTML, {path}) {where}: "
                            f"install it with `{INSTALL}` or name its folder with --source PATH")
    order = ("pr", "ch", "ap")
    return sorted(files, key=lambda f: (order.index(f.name[:2]) if f.name[:2] in order else 3,
                                        f.name))


def parse(files: Iterable[Path]) -> tuple[list[Section], str]:
    """Every section of the book's ``files``, in order (anchors made unique), and the book's
    version as its text states it ("unknown" if it does not)."""
    sections: list[Section] = []
    version = "unknown"
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = _VERSION.search(text)
        if found and version == "unknown":
            version = found.group(1)
        parser = _BookParser()
        parser.feed(text)
        parser.close()
        sections.extend(parser.sections)
    seen: Counter[str] = Counter()
    for i, s in enumerate(sections):
        s.anchor = "_".join(s.anchor.split()) or f"s{i}"  # ids hold no whitespace
        seen[s.anchor] += 1
        if seen[s.anchor] > 1:
            s.anchor = f"{s.anchor}~{seen[s.anchor]}"
    return sections, version


def _norm(text: str) -> str:
    """Lower case, runs of non-alphanumerics as one space."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _key(heading: str) -> str:
    """A heading compared for being generic or repeated: normalized, no leading article."""
    return re.sub(r"^(?:the|a|an) ", "", _norm(heading))


def first_sentence(text: str) -> str:
    """The text up to its first ``.``, ``!`` or ``?`` that ends a word followed by a space."""
    return re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0]


def select(sections: Sequence[Section], *, min_words: int = 20, min_query_words: int = 2,
           max_query_words: int = 20) -> tuple[list[Section], dict[str, int]]:
    """The sections that make a (query, passage) pair and the number dropped per reason (the
    first that applies, in the module docstring's order)."""
    candidates = [s for s in sections if not s.top and s.heading]
    headings = Counter(_key(s.query) for s in candidates)
    passages = Counter(s.passage for s in candidates if _words(s.passage) >= min_words)
    kept: list[Section] = []
    dropped = dict.fromkeys(("short_passage", "generic_heading", "query_length",
                             "repeated_heading", "repeated_passage", "in_first_sentence"), 0)
    for s in candidates:
        query, passage = s.query, s.passage
        if _words(passage) < min_words:
            reason = "short_passage"
        elif _key(query) in GENERIC or not _key(query):
            reason = "generic_heading"
        elif not min_query_words <= _words(query) <= max_query_words:
            reason = "query_length"
        elif headings[_key(query)] > 1:
            reason = "repeated_heading"
        elif passages[passage] > 1:
            reason = "repeated_passage"
        elif f" {_norm(query)} " in f" {_norm(first_sentence(passage))} ":
            reason = "in_first_sentence"
        else:
            kept.append(s)
            continue
        dropped[reason] += 1
    return kept, dropped


def _content(text: str) -> set[str]:
    return {w for w in _norm(text).split() if w not in _STOP}


def _overlap(query: str, passage: str) -> float:
    """The share of the query's content words that its passage holds (exact, unstemmed)."""
    words = _content(query)
    return len(words & _content(passage)) / len(words) if words else 0.0


def build(out: PathLike, *, source: PathLike | None = None, max_words: int = 200,
          min_words: int = 20, top_k: int = 100) -> dict[str, Any]:
    """Build the transfer set into ``out`` (see the module docstring); return the stats.

    Raises :class:`MissingSource` when the book is not at ``source`` (default: the installed
    package's folder), ValueError for bad parameters or a book without a usable section.
    """
    if max_words < 1 or min_words < 1 or top_k < 1:
        raise ValueError("positive max_words, min_words and top_k")
    files = source_files(source)
    sections, version = parse(files)
    kept, dropped = select(sections, min_words=min_words)
    if not kept:
        raise ValueError(f"no usable section in {len(files)} HTML file(s) of "
                         f"{DEFAULT_SOURCE if source is None else source}")
    out = Path(out)
    corpus: dict[str, Doc] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    truncated = 0
    for s in kept:
        words = s.passage.split()
        truncated += len(words) > max_words
        corpus[s.anchor] = Doc(docid=s.anchor, title=s.chapter, text=" ".join(words[:max_words]))
        queries[f"q:{s.anchor}"] = s.query
        qrels[f"q:{s.anchor}"] = {s.anchor: 1}

    beir.write_corpus(out / "corpus.jsonl", corpus)
    beir.write_queries(out / "queries.jsonl", queries)
    beir.write_qrels(out / "qrels" / f"{SPLIT}.tsv", qrels)
    run = bm25_run(corpus, queries, top_k, _bm25(corpus))
    trec.write_run(out / "bm25" / f"{SPLIT}.trec", run, tag="bm25")
    overlaps = [_overlap(s.query, corpus[s.anchor].passage) for s in kept]
    stats = {
        "source": "Debian Reference (English original, DocBook HTML) by Osamu Aoki: section "
                  "headings as queries, section prose as passages",
        "package": PACKAGE,
        "version": version,
        "pinned": PINNED,
        "install": INSTALL,
        "use": "evaluation only (never training or tuning)",
        "params": {"max_words": max_words, "min_words": min_words, "top_k": top_k},
        "files": len(files),
        "sections": sum(not s.top and bool(s.heading) for s in sections),
        "dropped": dropped,
        "docs": len(corpus),
        "truncated_passages": truncated,
        "queries": {SPLIT: len(queries)},
        "avg_words": {"passage": _mean([_words(d.text) for d in corpus.values()]),
                      "query": {SPLIT: _mean([_words(q) for q in queries.values()])}},
        "query_overlap": {"mean_share_of_query_words_in_passage":
                          round(sum(overlaps) / len(overlaps), 4),
                          "queries_without_overlap": sum(o == 0 for o in overlaps),
                          "queries_fully_in_passage": sum(o == 1 for o in overlaps)},
        "bm25": {SPLIT: {m: round(v, 4) for m, v in evaluate_run(run, qrels, METRICS).items()}},
    }
    with atomic_write(out / "stats.json") as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.data.debref",
        description="Build the Debian Reference transfer set (section heading = query, section "
                    "prose = passage; evaluation only): a BEIR folder with one split, test, its "
                    f"BM25 top-k run and stats.json. Needs `{INSTALL}` or --source.")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--source", type=Path, default=None,
                   help=f"folder of the book's *.en.html files, or one file "
                        f"(default {DEFAULT_SOURCE}, from the {PACKAGE} package)")
    p.add_argument("--max-words", type=int, default=200,
                   help="cut passages to this many words (default %(default)s)")
    p.add_argument("--min-words", type=int, default=20,
                   help="drop sections with less prose than this (default %(default)s)")
    p.add_argument("--top-k", type=int, default=100, help="BM25 depth (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that holds no earlier build")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: no source, bad input)."""
    args = _parser().parse_args(argv)
    out: Path = args.out
    start = time.perf_counter()
    try:
        check_output_folder(out, "stats.json", force=args.force)
        stats = build(out, source=args.source, max_words=args.max_words,
                      min_words=args.min_words, top_k=args.top_k)
    except (MissingSource, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if stats["version"] != PINNED:
        print(f"warning: the book is version {stats['version']}, this set pins {PINNED}",
              file=sys.stderr)
    print(f"{out}: {stats['queries'][SPLIT]} queries, {stats['docs']} passages from "
          f"{PACKAGE} {stats['version']} ({stats['sections']} sections, "
          f"{stats['truncated_passages']} passages cut) in {time.perf_counter() - start:.1f} s")
    print(format_table([(f"bm25 {SPLIT}", stats["bm25"][SPLIT])], METRICS, first="run"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
