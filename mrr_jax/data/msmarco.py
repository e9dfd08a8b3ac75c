"""MS MARCO TSV files: collection (``pid<TAB>passage``), queries (``qid<TAB>query``), and
qrels in TREC format (``qid 0 pid rel``, read by :mod:`mrr_jax.data.trec`).

Every line must have exactly two tab-separated columns; ids must be non-empty and unique.
Errors raise :class:`DataError` naming the file, 1-based line and column (``pid``, ``passage``,
``qid``, ``query``, ``columns``). Empty passages/queries are an error by default; with
``on_empty="skip"`` they are skipped, counted in ``skipped`` and logged once.

The format cannot hold tabs or line breaks inside a text: writers turn them into spaces.
Documents are :class:`Doc` with an empty title. Writers are atomic; ``.gz`` paths are gzipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from mrr_jax.data import trec
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
    iter_lines,
    one_line,
)
from mrr_jax.data.records import Doc, Qrels, Queries


def _iter_pairs(path: PathLike, id_name: str, text_name: str, on_empty: OnEmpty,
                skipped: Skipped | None, empty_reason: str) -> Iterator[tuple[str, str]]:
    check_on_empty(on_empty)
    skipped = Skipped() if skipped is None else skipped
    before = skipped.total
    seen: dict[str, int] = {}
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        cols = text.split("\t")
        if len(cols) != 2:
            raise DataError(f"expected 2 tab-separated columns ({id_name}, {text_name}), "
                            f"got {len(cols)}", path=path, line=line, field="columns")
        key, body = cols[0].strip(), cols[1]
        check_id(key, path=path, line=line, field=id_name)
        check_unique(seen, key, path, line, id_name)
        if not body.strip():
            skip_or_raise(on_empty, skipped, empty_reason, path, line, text_name)
            continue
        yield key, body
    report_skipped(skipped, before, str(path))


def iter_collection(path: PathLike, *, on_empty: OnEmpty = "error",
                    skipped: Skipped | None = None) -> Iterator[Doc]:
    """Stream the passages of a ``collection.tsv`` as :class:`Doc` (no title)."""
    for pid, passage in _iter_pairs(path, "pid", "passage", on_empty, skipped, "empty passage"):
        yield Doc(docid=pid, text=passage)


def load_collection(path: PathLike, *, on_empty: OnEmpty = "error",
                    skipped: Skipped | None = None) -> dict[str, Doc]:
    """Read a whole ``collection.tsv`` into ``{pid: Doc}``."""
    return {d.docid: d for d in iter_collection(path, on_empty=on_empty, skipped=skipped)}


def iter_queries(path: PathLike, *, on_empty: OnEmpty = "error",
                 skipped: Skipped | None = None) -> Iterator[tuple[str, str]]:
    """Stream ``(qid, query)`` pairs of a queries TSV."""
    yield from _iter_pairs(path, "qid", "query", on_empty, skipped, "empty query")


def load_queries(path: PathLike, *, on_empty: OnEmpty = "error",
                 skipped: Skipped | None = None) -> Queries:
    """Read a whole queries TSV into ``{qid: query}``."""
    return dict(iter_queries(path, on_empty=on_empty, skipped=skipped))


def iter_qrels(path: PathLike) -> Iterator[tuple[str, str, int]]:
    """Stream ``(qid, pid, relevance)`` of MS MARCO qrels (TREC format)."""
    return trec.iter_qrels(path)


def load_qrels(path: PathLike) -> Qrels:
    """Read MS MARCO qrels (TREC format) into ``{qid: {pid: relevance}}``."""
    return trec.load_qrels(path)


def write_qrels(path: PathLike, qrels: Mapping[str, Mapping[str, int]]) -> int:
    """Write MS MARCO qrels (TREC format, ``qid 0 pid rel``); return the row count."""
    return trec.write_qrels(path, qrels)


def _write_pairs(path: PathLike, pairs: Iterable[tuple[str, str]], id_name: str,
                 text_name: str) -> int:
    seen: set[str] = set()
    n = 0
    with atomic_write(path) as f:
        for n, (key, body) in enumerate(pairs, start=1):
            check_id(key, path=path, line=n, field=id_name)
            if key in seen:
                raise DataError(f"duplicate id {key!r}", path=path, line=n, field=id_name)
            if not body.strip():
                raise DataError(f"empty {text_name}", path=path, line=n, field=text_name)
            seen.add(key)
            f.write(f"{key}\t{one_line(body)}\n")
    return n


def write_collection(path: PathLike, docs: Iterable[Doc] | Mapping[str, Doc]) -> int:
    """Write ``pid<TAB>passage`` lines (the passage is ``Doc.passage``: title + text)."""
    items = docs.values() if isinstance(docs, Mapping) else docs
    return _write_pairs(path, ((d.docid, d.passage) for d in items), "pid", "passage")


def write_queries(path: PathLike, queries: Mapping[str, str] | Iterable[tuple[str, str]]) -> int:
    """Write ``qid<TAB>query`` lines; return the count."""
    items = queries.items() if isinstance(queries, Mapping) else queries
    return _write_pairs(path, items, "qid", "query")
