"""Re-ranking units: one query with its top-k first-stage candidates and their passages.

A unit is what a re-ranker scores together: the scoring job cuts its work into units, the plan
grid re-ranks units. Queries come in :func:`mrr_jax.data.trec.qid_key` order and candidates in
:func:`mrr_jax.data.trec.ranking` order (best first stage first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from mrr_jax.data import trec
from mrr_jax.data.records import Doc


@dataclasses.dataclass(frozen=True)
class Unit:
    """One query and its candidates, best first stage first."""

    qid: str
    query: str
    docids: tuple[str, ...]
    passages: tuple[str, ...]


def passage_of(doc: Doc | str) -> str:
    """A corpus entry's passage: ``Doc.passage``, or the string itself."""
    return doc.passage if isinstance(doc, Doc) else doc


def units_from_run(run: Mapping[str, Mapping[str, float]], queries: Mapping[str, str],
                   corpus: Mapping[str, Doc | str], top_k: int) -> list[Unit]:
    """Units of a checked run (every id known): per query its ``top_k`` best documents, queries
    in :func:`~mrr_jax.data.trec.qid_key` order. ``corpus`` values are ``Doc`` (its
    ``passage`` is read) or passage strings."""
    units = []
    for qid in sorted(run, key=trec.qid_key):
        ranked = trec.ranking(run[qid])[:top_k]
        if not ranked:
            continue
        docids = tuple(d for d, _ in ranked)
        units.append(Unit(qid, queries[qid], docids,
                          tuple(passage_of(corpus[d]) for d in docids)))
    return units
