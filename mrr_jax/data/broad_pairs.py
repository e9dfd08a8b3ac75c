"""(query, passage) pairs of the broad training set (:mod:`mrr_jax.data.broad`) out of its
documents, and their filtering: held-out text, repeats within the set, a cap per source.

Pairs by source kind (query kinds as in :mod:`mrr_jax.data.broad_text`):

- ``docstring``: ``summary`` (the example set's parser; the rest cut before its examples);
- ``changelog``: ``first_sentence`` of each item with enough words after it;
- every other kind: ``heading`` for each section whose heading is a usable query -- the
  Debian Reference's filters (:func:`mrr_jax.data.debref.select`: no generic, over-long,
  repeated or trivially matching heading, no repeated passage), a numbered run-in heading
  ("2. Grant of Copyright License.") counting as one -- and ``first_sentence`` of each
  paragraph of the other sections.

A pair is dropped if its query (normalized: lower case, runs of non-alphanumerics as a space)
is a held-out query, its passage (normalized, or its first ``PREFIX_WORDS`` words) a held-out
passage; if its query is used more than once in the set (all uses dropped: ambiguous) or its
passage repeats an earlier one (the first kept). Then at most ``cap`` pairs per (source kind,
package) are kept (changelogs, the most plentiful, have a cap of their own): those with the
lowest SHA-1 of their id.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from mrr_jax.data.broad_sources import SourceDoc
from mrr_jax.data.broad_text import (
    changelog_items,
    clean,
    docstring_passage,
    is_prose,
    numbered_heading,
    sections,
    split_first,
)
from mrr_jax.data.debref import Section, _norm, select
from mrr_jax.data.example import Entry

PREFIX_WORDS = 32


@dataclass(frozen=True, slots=True)
class Pair:
    """One training pair: where it comes from, how its query was made, the texts."""

    kind: str  # source kind
    qkind: str  # query kind: summary | heading | first_sentence
    package: str
    unit: str  # the file it comes from (splits are by file)
    docid: str
    query: str
    passage: str


def _id(*parts: str) -> str:
    return "/".join("_".join(p.split()) for p in parts)


def cut(text: str, max_words: int) -> str:
    """The first ``max_words`` words of a text."""
    return " ".join(text.split()[:max_words])


def docstring_pairs(entries: Iterable[tuple[str, str, Entry]], *, min_words: int,
                    max_words: int) -> Iterator[Pair]:
    """``summary`` pairs of docstring entries (``(distribution, file, Entry)``)."""
    for dist, rel, e in entries:
        query, passage = clean(e.query), docstring_passage(e.passage)
        if len(passage.split()) >= min_words and is_prose(query) and query[:1].isalnum():
            yield Pair("docstring", "summary", dist, f"{dist}/{rel}",
                       _id("docstring", dist, e.qualname), query, cut(passage, max_words))


def document_pairs(docs: Iterable[SourceDoc], *, min_words: int, max_words: int,
                   ) -> tuple[list[Pair], dict[str, int]]:
    """Pairs of the documents (see the module docstring) and the headings dropped per
    reason."""
    pairs: list[Pair] = []
    headed: list[tuple[Section, SourceDoc, int]] = []  # heading candidates, in order
    loose: list[tuple[SourceDoc, int, list[str]]] = []  # paragraphs of unheaded sections
    for doc in docs:
        if doc.kind == "changelog":
            for i, item in enumerate(changelog_items(doc.text)):
                split = split_first(item, min_words=min_words)
                if split is not None:
                    pairs.append(_pair(doc, "first_sentence", i, *split, max_words))
            continue
        n = 0
        for block in sections(doc.text):
            paragraphs = list(block.paragraphs)
            if block.query[:1].isalnum():
                headed.append((Section(f"{len(headed)}", heading=block.query,
                                       paragraphs=paragraphs), doc, n))
                n += 1
                continue
            for para in paragraphs:
                run_in = numbered_heading(para)
                if run_in is not None:
                    headed.append((Section(f"{len(headed)}", heading=run_in[0],
                                           paragraphs=[run_in[1]]), doc, n))
                else:
                    loose.append((doc, n, [para]))
                n += 1
    kept, dropped = select([s for s, _, _ in headed], min_words=min_words)
    kept_ids = {s.anchor for s in kept}
    for s, doc, n in headed:
        if s.anchor in kept_ids:
            pairs.append(_pair(doc, "heading", n, s.query, s.passage, max_words))
        else:
            loose.append((doc, n, s.paragraphs))
    for doc, n, paragraphs in sorted(loose, key=lambda t: (t[0].package, t[0].path, t[1])):
        for j, para in enumerate(paragraphs):
            split = split_first(para, min_words=min_words)
            if split is not None:
                pairs.append(_pair(doc, "first_sentence", n * 1000 + j, *split, max_words))
    return pairs, dropped


def _pair(doc: SourceDoc, qkind: str, n: int, query: str, passage: str,
          max_words: int) -> Pair:
    return Pair(doc.kind, qkind, doc.package, f"{doc.package}/{doc.path}",
                _id(doc.kind, doc.package, f"{doc.path}#{n}"), query, cut(passage, max_words))


@dataclass(frozen=True, slots=True)
class HeldOut:
    """Normalized queries and passages that the set must not contain."""

    queries: frozenset[str]
    passages: frozenset[str]

    @classmethod
    def of(cls, queries: Iterable[str], passages: Iterable[str],
           max_words: int) -> HeldOut:
        keys: set[str] = set()
        for p in passages:
            keys.update(passage_keys(p, max_words))
        return cls(frozenset(_norm(q) for q in queries), frozenset(keys))


def passage_keys(text: str, max_words: int) -> tuple[str, str]:
    """A passage's normalized text (cut at ``max_words`` words) and normalized first
    ``PREFIX_WORDS`` words: two passages that share either are the same text."""
    norm = _norm(cut(text, max_words))
    return norm, " ".join(norm.split()[:PREFIX_WORDS])


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def dedup(pairs: list[Pair], held_out: HeldOut, *, cap: int, max_words: int,
          caps: Mapping[str, int] | None = None) -> tuple[list[Pair], dict[str, int]]:
    """The pairs kept (module docstring) in input order, and how many were dropped per
    reason; ``caps``: another cap for some source kinds."""
    dropped = dict.fromkeys(("held_out_query", "held_out_passage", "repeated_query",
                             "repeated_passage", "over_cap"), 0)
    queries = Counter(_norm(p.query) for p in pairs)
    seen: set[str] = set()
    ids: set[str] = set()
    kept: list[Pair] = []
    for p in pairs:
        keys = passage_keys(p.passage, max_words)
        q = _norm(p.query)
        if q in held_out.queries or not q:
            reason = "held_out_query"
        elif any(k in held_out.passages for k in keys):
            reason = "held_out_passage"
        elif queries[q] > 1:
            reason = "repeated_query"
        elif any(k in seen for k in keys) or p.docid in ids:
            reason = "repeated_passage"
        else:
            seen.update(keys)
            ids.add(p.docid)
            kept.append(p)
            continue
        dropped[reason] += 1
    groups: dict[tuple[str, str], list[Pair]] = defaultdict(list)
    for p in kept:
        groups[(p.kind, p.package)].append(p)
    chosen = {p.docid
              for (kind, _), g in groups.items()
              for p in sorted(g, key=lambda p: _sha1(p.docid))[:(caps or {}).get(kind, cap)]}
    dropped["over_cap"] = len(kept) - len(chosen)
    return [p for p in kept if p.docid in chosen], dropped
