"""Candidates JSONL: one query per line with its first-stage candidates.

``{"qid": str, "query": str, "candidates": [{"docid": str, "text"?: str, "score"?: number}]}``

A candidate without ``text`` is looked up in a corpus by the scoring job; ``score`` is the
first-stage score. Errors raise :class:`DataError` naming the file, 1-based line and field
(``candidates[3].docid``): malformed JSON, a missing field, a non-list ``candidates``, a
non-numeric or non-finite score, a duplicate qid (across lines) or docid (within a query).

Empty texts: an empty query, or a candidate whose ``text`` is present but blank, is an error by
default; with ``on_empty="skip"`` the query line (or just the candidate) is skipped, counted
in ``skipped`` and logged once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    to_float,
)
from mrr_jax.data.records import Doc
from mrr_jax.data.trec import qid_key, ranking


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate document of a query: its id, optionally its text and first-stage score."""

    docid: str
    text: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """A query and its candidates (in file order)."""

    qid: str
    query: str
    candidates: list[Candidate] = field(default_factory=list)


def iter_candidates(path: PathLike, *, on_empty: OnEmpty = "error",
                    skipped: Skipped | None = None) -> Iterator[CandidateQuery]:
    """Stream the queries of a candidates JSONL file in file order."""
    check_on_empty(on_empty)
    skipped = Skipped() if skipped is None else skipped
    before = skipped.total
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        qid = get_id(obj, "qid", path, line)
        query = get_str(obj, "query", path, line)
        check_unique(seen, qid, path, line, "qid", what="qid")
        if "candidates" not in obj:
            raise DataError("missing field", path=path, line=line, field="candidates")
        raw = obj["candidates"]
        if not isinstance(raw, list):
            raise DataError(f"expected a list, got {type(raw).__name__}",
                            path=path, line=line, field="candidates")
        cands = list(_parse_candidates(raw, path, line, on_empty, skipped))
        if not query.strip():
            skip_or_raise(on_empty, skipped, "empty query", path, line, "query")
            continue
        yield CandidateQuery(qid=qid, query=query, candidates=cands)
    report_skipped(skipped, before, str(path))


def _parse_candidates(raw: list[Any], path: PathLike, line: int, on_empty: OnEmpty,
                      skipped: Skipped) -> Iterator[Candidate]:
    docids: set[str] = set()
    for i, c in enumerate(raw):
        where = f"candidates[{i}]."
        if not isinstance(c, dict):
            raise DataError(f"expected a JSON object, got {type(c).__name__}",
                            path=path, line=line, field=f"candidates[{i}]")
        docid = get_id(c, "docid", path, line, where)
        if docid in docids:
            raise DataError(f"duplicate docid {docid!r} in this query",
                            path=path, line=line, field=where + "docid")
        docids.add(docid)
        text = get_str(c, "text", path, line, required=False, where=where)
        score = c.get("score")
        if score is not None:
            score = to_float(score, path=path, line=line, field=where + "score")
        if text is not None and not text.strip():
            skip_or_raise(on_empty, skipped, "empty document", path, line, where + "text",
                          reason="empty candidate text")
            continue
        yield Candidate(docid=docid, text=text, score=score)


def load_candidates(path: PathLike, *, on_empty: OnEmpty = "error",
                    skipped: Skipped | None = None) -> dict[str, CandidateQuery]:
    """Read a whole candidates JSONL into ``{qid: CandidateQuery}`` (file order)."""
    return {c.qid: c for c in iter_candidates(path, on_empty=on_empty, skipped=skipped)}


def write_candidates(path: PathLike, items: Iterable[CandidateQuery]) -> int:
    """Write candidates JSONL (``text``/``score`` left out when ``None``); return the count."""
    n = 0
    with atomic_write(path) as f:
        for n, item in enumerate(items, start=1):
            check_id(item.qid, path=path, line=n, field="qid")
            if not item.query.strip():
                raise DataError("empty query", path=path, line=n, field="query")
            cands = []
            for i, c in enumerate(item.candidates):
                check_id(c.docid, path=path, line=n, field=f"candidates[{i}].docid")
                row: dict[str, Any] = {"docid": c.docid}
                if c.text is not None:
                    row["text"] = c.text
                if c.score is not None:
                    row["score"] = to_float(c.score, path=path, line=n,
                                            field=f"candidates[{i}].score")
                cands.append(row)
            f.write(dumps({"qid": item.qid, "query": item.query, "candidates": cands}) + "\n")
    return n


def from_run(run: Mapping[str, Mapping[str, float]], queries: Mapping[str, str],
             corpus: Mapping[str, Doc] | None = None, *, k: int | None = None,
             ) -> Iterator[CandidateQuery]:
    """Candidates from a run: per query (``qid_key`` order) its best ``k`` documents.

    With ``corpus`` each candidate carries ``Doc.passage`` as text. A qid or docid that
    ``queries``/``corpus`` lacks raises :class:`DataError`; run
    :func:`mrr_jax.data.ids.check_ids` first to skip them instead.
    """
    for qid in sorted(run, key=qid_key):
        if qid not in queries:
            raise DataError(f"query {qid!r} of the run is not among the queries", field="qid")
        ranked = ranking(run[qid])
        cands = []
        for docid, score in ranked[:k] if k else ranked:
            if corpus is not None and docid not in corpus:
                raise DataError(f"document {docid!r} of the run (query {qid!r}) is not in the "
                                "corpus", field="docid")
            text = corpus[docid].passage if corpus is not None else None
            cands.append(Candidate(docid=docid, text=text, score=score))
        yield CandidateQuery(qid=qid, query=queries[qid], candidates=cands)
