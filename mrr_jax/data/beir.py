"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

- corpus line: ``{"_id": str, "title": str (optional), "text": str, ...}`` (extra keys ignored)
- queries line: ``{"_id": str, "text": str, ...}``
- qrels: a TSV with the header ``query-id<TAB>corpus-id<TAB>score`` (a file without the header
  is read too), one integer judgement per line.

Readers come in two kinds: ``iter_*`` stream records (a generator; only the ids seen so far are
kept, to catch duplicates) and ``load_*`` build a dict. Both raise :class:`DataError` naming the
file, line and field for malformed JSON, a missing field, a wrong column count, a non-integer
score, a duplicate id (corpus, queries) or a duplicate (query-id, corpus-id) pair (qrels).

Empty records -- a document whose title and text are both blank, a query whose text is blank --
are an error by default (``on_empty="error"``); with ``on_empty="skip"`` they are skipped,
counted in the optional ``skipped`` tally, and one warning is logged at the end of the file.
Files ending in ``.gz`` are read and written through gzip. Writers are atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from mrr_jax.data.errors import (
    DataError,
    OnEmpty,
    Skipped,
    check_on_empty,
    report_skipped,
    skip_or_raise,
)
from mrr_jax.data.fileio import (
    PathLike,
    atomic_write,
    check_id,
    check_unique,
    dumps,
    get_id,
    get_str,
    iter_json_objects,
    iter_lines,
    to_int,
)
from mrr_jax.data.records import Doc, Qrels, Queries, qrels_from
from mrr_jax.data.trec import qid_key

QRELS_HEADER = ("query-id", "corpus-id", "score")


def iter_corpus(path: PathLike, *, on_empty: OnEmpty = "error",
                skipped: Skipped | None = None) -> Iterator[Doc]:
    """Stream the documents of a ``corpus.jsonl`` in file order."""
    check_on_empty(on_empty)
    skipped = Skipped() if skipped is None else skipped
    before = skipped.total
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        docid = get_id(obj, "_id", path, line)
        text = get_str(obj, "text", path, line)
        title = get_str(obj, "title", path, line, required=False) or ""
        check_unique(seen, docid, path, line, "_id")
        doc = Doc(docid=docid, text=text, title=title)
        if doc.is_empty:
            skip_or_raise(on_empty, skipped, "empty document (title and text are blank)", path,
                          line, "text", reason="empty document")
            continue
        yield doc
    report_skipped(skipped, before, str(path))


def load_corpus(path: PathLike, *, on_empty: OnEmpty = "error",
                skipped: Skipped | None = None) -> dict[str, Doc]:
    """Read a whole ``corpus.jsonl`` into ``{docid: Doc}`` (file order)."""
    return {d.docid: d for d in iter_corpus(path, on_empty=on_empty, skipped=skipped)}


def iter_queries(path: PathLike, *, on_empty: OnEmpty = "error",
                 skipped: Skipped | None = None) -> Iterator[tuple[str, str]]:
    """Stream ``(qid, text)`` pairs of a ``queries.jsonl`` in file order."""
    check_on_empty(on_empty)
    skipped = Skipped() if skipped is None else skipped
    before = skipped.total
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        qid = get_id(obj, "_id", path, line)
        text = get_str(obj, "text", path, line)
        check_unique(seen, qid, path, line, "_id")
        if not text.strip():
            skip_or_raise(on_empty, skipped, "empty query", path, line, "text")
            continue
        yield qid, text
    report_skipped(skipped, before, str(path))


def load_queries(path: PathLike, *, on_empty: OnEmpty = "error",
                 skipped: Skipped | None = None) -> Queries:
    """Read a whole ``queries.jsonl`` into ``{qid: text}`` (file order)."""
    return dict(iter_queries(path, on_empty=on_empty, skipped=skipped))


def iter_qrels(path: PathLike) -> Iterator[tuple[str, str, int]]:
    """Stream ``(qid, docid, relevance)`` triples of a BEIR qrels TSV."""
    seen: set[tuple[str, str]] = set()
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        cols = text.split("\t")
        if line == 1 and tuple(c.strip() for c in cols) == QRELS_HEADER:
            continue
        if len(cols) != 3:
            raise DataError(f"expected 3 tab-separated columns (query-id, corpus-id, score), "
                            f"got {len(cols)}", path=path, line=line, field="columns")
        qid, docid = cols[0].strip(), cols[1].strip()
        check_id(qid, path=path, line=line, field="query-id")
        check_id(docid, path=path, line=line, field="corpus-id")
        rel = to_int(cols[2].strip(), path=path, line=line, field="score")
        if (qid, docid) in seen:
            raise DataError(f"duplicate judgement for ({qid!r}, {docid!r})",
                            path=path, line=line, field="corpus-id")
        seen.add((qid, docid))
        yield qid, docid, rel


def load_qrels(path: PathLike) -> Qrels:
    """Read a BEIR qrels TSV into ``{qid: {docid: relevance}}``."""
    return qrels_from(iter_qrels(path))


def load_split(folder: PathLike, split: str, *, on_empty: OnEmpty = "error",
               skipped: Skipped | None = None) -> tuple[dict[str, Doc], Queries, Qrels]:
    """``(corpus, queries, qrels)`` of one split of a BEIR folder.

    As BEIR's own loader does, ``queries`` keeps only the queries judged in ``qrels``. A qrels
    query that is missing from ``queries.jsonl`` raises :class:`DataError` (field
    ``query-id``) -- also one skipped there as empty under ``on_empty="skip"``.
    """
    folder = Path(folder)
    corpus = load_corpus(folder / "corpus.jsonl", on_empty=on_empty, skipped=skipped)
    all_queries = load_queries(folder / "queries.jsonl", on_empty=on_empty, skipped=skipped)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels = load_qrels(qrels_path)
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise DataError(f"{len(missing)} judged queries are not in queries.jsonl: "
                        f"{', '.join(map(repr, missing[:5]))}", path=qrels_path,
                        field="query-id")
    return corpus, {q: all_queries[q] for q in qrels}, qrels


def write_corpus(path: PathLike, docs: Iterable[Doc] | Mapping[str, Doc]) -> int:
    """Write documents as ``corpus.jsonl`` (``_id``, ``title``, ``text``); return the count.

    Duplicate ids and empty documents raise :class:`DataError` (nothing is written).
    """
    items = docs.values() if isinstance(docs, Mapping) else docs
    seen: set[str] = set()
    n = 0
    with atomic_write(path) as f:
        for n, doc in enumerate(items, start=1):
            check_id(doc.docid, path=path, line=n, field="_id")
            if doc.docid in seen:
                raise DataError(f"duplicate id {doc.docid!r}", path=path, line=n, field="_id")
            if doc.is_empty:
                raise DataError("empty document", path=path, line=n, field="text")
            seen.add(doc.docid)
            f.write(dumps({"_id": doc.docid, "title": doc.title, "text": doc.text}) + "\n")
    return n


def write_queries(path: PathLike, queries: Mapping[str, str] | Iterable[tuple[str, str]]) -> int:
    """Write ``(qid, text)`` pairs as ``queries.jsonl`` (``_id``, ``text``); return the count."""
    items = queries.items() if isinstance(queries, Mapping) else queries
    seen: set[str] = set()
    n = 0
    with atomic_write(path) as f:
        for n, (qid, text) in enumerate(items, start=1):
            check_id(qid, path=path, line=n, field="_id")
            if qid in seen:
                raise DataError(f"duplicate id {qid!r}", path=path, line=n, field="_id")
            if not text.strip():
                raise DataError("empty query", path=path, line=n, field="text")
            seen.add(qid)
            f.write(dumps({"_id": qid, "text": text}) + "\n")
    return n


def write_qrels(path: PathLike, qrels: Mapping[str, Mapping[str, int]]) -> int:
    """Write a BEIR qrels TSV (with header); return the number of rows.

    Queries in numeric-then-string order (:func:`mrr_jax.data.trec.qid_key`), docids sorted.
    """
    n = 0
    with atomic_write(path) as f:
        f.write("\t".join(QRELS_HEADER) + "\n")
        for qid in sorted(qrels, key=qid_key):
            check_id(qid, path=path, line=None, field="query-id")
            for docid in sorted(qrels[qid]):
                check_id(docid, path=path, line=None, field="corpus-id")
                f.write(f"{qid}\t{docid}\t{int(qrels[qid][docid])}\n")
                n += 1
    return n

