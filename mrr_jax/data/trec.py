"""TREC run files (``qid Q0 docid rank score tag``) and TREC qrels (``qid 0 docid rel``).

Columns are separated by any whitespace. A run is read by *score* (the rank column is checked
to be an integer but otherwise ignored, as ``trec_eval`` does). Errors -- wrong column count,
non-numeric rank or score, a non-finite score, a duplicate ``(qid, docid)`` pair -- raise
:class:`DataError` naming the file, the 1-based line and the column.

Ranking order, used by :func:`ranking`, :func:`write_run`, :func:`top_k` and by
``evaluation.evaluate``: score descending, ties broken by docid ascending (string order), so a
written run's ranks are exactly the order the metrics see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike, atomic_write, check_id, iter_lines, to_float, to_int
from mrr_jax.data.records import Qrels, Run, qrels_from

RUN_COLUMNS = ("qid", "Q0", "docid", "rank", "score", "tag")
QRELS_COLUMNS = ("qid", "iteration", "docid", "relevance")


class RunLine(NamedTuple):
    """One line of a TREC run file, with its 1-based ``line`` number in the file."""

    qid: str
    docid: str
    rank: int
    score: float
    tag: str
    line: int = 0


def iter_run(path: PathLike) -> Iterator[RunLine]:
    """Stream the lines of a TREC run file (file order); duplicate (qid, docid) pairs raise."""
    seen: set[tuple[str, str]] = set()
    for line, text in iter_lines(path):
        cols = text.split()
        if not cols:
            continue
        if len(cols) != 6:
            raise DataError(f"expected 6 columns ({' '.join(RUN_COLUMNS)}), got {len(cols)}",
                            path=path, line=line, field="columns")
        qid, _, docid, rank, score, tag = cols
        rank_i = to_int(rank, path=path, line=line, field="rank")
        score_f = to_float(score, path=path, line=line, field="score")
        if (qid, docid) in seen:
            raise DataError(f"duplicate (qid, docid) pair ({qid!r}, {docid!r})",
                            path=path, line=line, field="docid")
        seen.add((qid, docid))
        yield RunLine(qid, docid, rank_i, score_f, tag, line)


def load_run(path: PathLike) -> Run:
    """Read a TREC run file into ``{qid: {docid: score}}``."""
    run: Run = {}
    for r in iter_run(path):
        run.setdefault(r.qid, {})[r.docid] = r.score
    return run


def iter_qrels(path: PathLike) -> Iterator[tuple[str, str, int]]:
    """Stream ``(qid, docid, relevance)`` of a TREC qrels file; duplicate pairs raise."""
    seen: set[tuple[str, str]] = set()
    for line, text in iter_lines(path):
        cols = text.split()
        if not cols:
            continue
        if len(cols) != 4:
            raise DataError(f"expected 4 columns ({' '.join(QRELS_COLUMNS)}), got {len(cols)}",
                            path=path, line=line, field="columns")
        qid, _, docid, rel = cols
        rel_i = to_int(rel, path=path, line=line, field="relevance")
        if (qid, docid) in seen:
            raise DataError(f"duplicate judgement for ({qid!r}, {docid!r})",
                            path=path, line=line, field="docid")
        seen.add((qid, docid))
        yield qid, docid, rel_i


def load_qrels(path: PathLike) -> Qrels:
    """Read a TREC qrels file into ``{qid: {docid: relevance}}``."""
    return qrels_from(iter_qrels(path))


def qid_key(qid: str) -> tuple[int, int, str]:
    """Sort key for query ids: numeric ids in numeric order first, then the others."""
    return (0, int(qid), qid) if qid.isdigit() else (1, 0, qid)


def ranking(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """``[(docid, score), ...]`` best first: score descending, ties by docid ascending."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def top_k(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """The ``k`` best documents of each query (dicts in ranking order; queries kept in order)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return {qid: dict(ranking(docs)[:k]) for qid, docs in run.items()}


_TAG = re.compile(r"\S+")


def write_run(path: PathLike, run: Mapping[str, Mapping[str, float]], *, tag: str = "mrr_jax",
              k: int | None = None) -> int:
    """Write a TREC run file; return the number of lines.

    Queries in :func:`qid_key` order; per query the documents in :func:`ranking` order with ranks
    1..n (only the first ``k`` if given). Scores are written with ``repr`` (exact round trip);
    a non-finite score or an id with whitespace raises :class:`DataError`.
    """
    if not _TAG.fullmatch(tag):
        raise ValueError(f"run tag must be one word without whitespace, got {tag!r}")
    n = 0
    with atomic_write(path) as f:
        for qid in sorted(run, key=qid_key):
            check_id(qid, path=path, line=None, field="qid")
            ranked = ranking(run[qid])
            for rank, (docid, score) in enumerate(ranked[:k] if k else ranked, start=1):
                check_id(docid, path=path, line=None, field="docid")
                value = to_float(score, path=path, line=n + 1, field="score")
                f.write(f"{qid} Q0 {docid} {rank} {value!r} {tag}\n")
                n += 1
    return n


def write_qrels(path: PathLike, qrels: Mapping[str, Mapping[str, int]] | Iterable[
        tuple[str, str, int]]) -> int:
    """Write TREC qrels (``qid 0 docid rel``); queries in :func:`qid_key` order, docids sorted.

    Accepts ``{qid: {docid: rel}}`` or ``(qid, docid, rel)`` triples. Returns the row count.
    """
    if not isinstance(qrels, Mapping):
        nested: Qrels = {}
        for qid, docid, rel in qrels:
            nested.setdefault(qid, {})[docid] = rel
        qrels = nested
    n = 0
    with atomic_write(path) as f:
        for qid in sorted(qrels, key=qid_key):
            check_id(qid, path=path, line=None, field="qid")
            for docid in sorted(qrels[qid]):
                check_id(docid, path=path, line=None, field="docid")
                f.write(f"{qid} 0 {docid} {int(qrels[qid][docid])}\n")
                n += 1
    return n
