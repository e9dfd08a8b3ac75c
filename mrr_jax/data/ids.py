"""Cross-file id checks: does a run (or qrels) refer only to known documents and queries?

:func:`check_ids` raises by default (``on_missing="error"``): a :class:`DataError` that names
how many ids are unknown, the first few of them and -- when the run was given as a file -- the
file and the line of the first one. With ``on_missing="warn"`` it logs one warning, drops the
unknown entries, and reports what it dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mrr_jax.data import trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.records import Run

log = logging.getLogger("mrr_jax.data")

OnMissing = Literal["error", "warn"]


@dataclass
class IdCheck:
    """The outcome of :func:`check_ids`.

    ``run``: the run without unknown entries (queries left with no document are dropped);
    ``skipped_entries``: how many (qid, docid) entries were dropped;
    ``unknown_docids`` / ``unknown_qids``: the distinct unknown ids, in first-seen order.
    """

    run: Run
    skipped_entries: int = 0
    unknown_docids: list[str] = field(default_factory=list)
    unknown_qids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every id was known."""
        return not self.unknown_docids and not self.unknown_qids


def check_ids(run: Mapping[str, Mapping[str, float]] | str | os.PathLike[str],
              corpus: Container[str], queries: Container[str] | None = None, *,
              on_missing: OnMissing = "error", max_listed: int = 5) -> IdCheck:
    """Check that every docid of ``run`` is in ``corpus`` (and every qid in ``queries``).

    ``run`` is ``{qid: {docid: score}}`` or the path of a TREC run file (read by streaming; the
    error then names the line of the first unknown id). ``corpus``/``queries`` are any
    containers of ids (a ``load_corpus`` dict, a set). Default: raise :class:`DataError` listing
    the first ``max_listed`` unknown ids; ``on_missing="warn"``: warn, drop, and count.
    """
    if on_missing not in ("error", "warn"):
        raise ValueError(f"on_missing must be 'error' or 'warn', got {on_missing!r}")
    path = None if isinstance(run, Mapping) else Path(run)
    entries = ((r.qid, r.docid, r.score, r.line) for r in trec.iter_run(path)) if path else (
        (qid, docid, score, None) for qid, docs in run.items() for docid, score in docs.items())
    kept: Run = {}
    result = IdCheck(run=kept)
    unknown_d: dict[str, int | None] = {}
    unknown_q: dict[str, int | None] = {}
    for qid, docid, score, line in entries:
        bad = False
        if queries is not None and qid not in queries:
            unknown_q.setdefault(qid, line)
            bad = True
        if docid not in corpus:
            unknown_d.setdefault(docid, line)
            bad = True
        if bad:
            result.skipped_entries += 1
        else:
            kept.setdefault(qid, {})[docid] = score
    result.unknown_docids = list(unknown_d)
    result.unknown_qids = list(unknown_q)
    if result.ok:
        return result
    parts = []
    if unknown_d:
        parts.append(_listing(unknown_d, "document id", "the corpus", max_listed))
    if unknown_q:
        parts.append(_listing(unknown_q, "query id", "the queries", max_listed))
    message = "run refers to " + "; and to ".join(parts)
    if on_missing == "error":
        first, name = (unknown_d, "docid") if unknown_d else (unknown_q, "qid")
        raise DataError(message, path=path, line=next(iter(first.values())), field=name)
    log.warning("%s%s; skipped %d run entries", f"{path}: " if path else "", message,
                result.skipped_entries)
    return result


def _listing(unknown: dict[str, int | None], what: str, where: str, max_listed: int) -> str:
    ids = list(unknown)
    shown = ", ".join(repr(i) for i in ids[:max_listed]) + (", ..." if len(ids) > max_listed
                                                             else "")
    first_line = next(iter(unknown.values()))
    at = f" (first at line {first_line})" if first_line is not None else ""
    return f"{len(ids)} unknown {what}(s) not in {where}: {shown}{at}"
