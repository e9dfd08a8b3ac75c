"""First-stage fusion: the re-ranker's score interpolated with the first stage's (e.g. BM25),
each normalised over one query's candidates, so that a weak re-ranker cannot do much worse
than the first stage it re-ranks.

For one query with candidates ``D`` (the keys of ``model``)::

    fused(d) = (1 - w) * N(model)(d) + w * N(first)(d)        w in [0, 1]

``w = 0`` is the model alone (its order), ``w = 1`` the first stage's order. ``N`` normalises
a list of scores over the query's candidates:

- ``minmax``: ``(s - min) / (max - min)``, in [0, 1]; a constant list gives 0.5 everywhere;
- ``zscore``: ``(s - mean) / std`` (population std); a constant list gives 0 everywhere.

``N(first)`` is taken over the candidates that ``first`` scores; a candidate it lacks gets the
lowest normalised first-stage value of the query (0 under ``minmax``), or 0 when ``first``
scores none of them. Entries of ``first`` that are not candidates are ignored. Pure functions,
plain records in and out; bad arguments raise a one-line ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

NORMS = ("minmax", "zscore")


def check_weight(weight) -> float:
    """``weight`` as a float; ``ValueError`` unless it is a real number in [0, 1]."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
            or not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"fusion weight must be a number in [0, 1] (0 = the model alone, "
                         f"1 = the first stage), got {weight!r}")
    return float(weight)


def check_norm(norm) -> str:
    """``norm``, which must be one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"fusion norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def _finite(scores: Mapping[str, float], side: str) -> dict[str, float]:
    if not isinstance(scores, Mapping):
        raise ValueError(f"{side} scores must be a mapping docid -> score, got "
                         f"{type(scores).__name__}")
    out = {}
    for docid, s in scores.items():
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
            raise ValueError(f"{side} score of {docid!r} must be a finite number, got {s!r}")
        out[docid] = float(s)
    return out


def normalise(scores: Mapping[str, float], norm: str = "minmax") -> dict[str, float]:
    """One query's scores normalised over its candidates (``minmax`` or ``zscore``; see the
    module docstring for constant lists)."""
    check_norm(norm)
    values = _finite(scores, "the")
    if not values:
        return {}
    if norm == "minmax":
        lo, hi = min(values.values()), max(values.values())
        if hi == lo:
            return dict.fromkeys(values, 0.5)
        return {d: (s - lo) / (hi - lo) for d, s in values.items()}
    mean = math.fsum(values.values()) / len(values)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in values.values()) / len(values))
    if std == 0.0:
        return dict.fromkeys(values, 0.0)
    return {d: (s - mean) / std for d, s in values.items()}


def fuse(model: Mapping[str, float], first: Mapping[str, float], weight: float,
         norm: str = "minmax") -> dict[str, float]:
    """One query's fused scores, ``{docid: (1 - weight) * N(model) + weight * N(first)}`` over
    the candidates of ``model`` (its key order kept); see the module docstring."""
    w = check_weight(weight)
    check_norm(norm)
    mine = normalise(_finite(model, "model"), norm)
    known = _finite(first, "first-stage")
    theirs = normalise({d: known[d] for d in mine if d in known}, norm)
    floor = min(theirs.values(), default=0.0)
    return {d: (1.0 - w) * m + w * theirs.get(d, floor) for d, m in mine.items()}


def fuse_run(model_run: Mapping[str, Mapping[str, float]],
             first_run: Mapping[str, Mapping[str, float]], weight: float,
             norm: str = "minmax") -> dict[str, dict[str, float]]:
    """:func:`fuse` per query of ``model_run`` (``{qid: {docid: score}}``); a query that
    ``first_run`` lacks has no first-stage score for any candidate."""
    check_weight(weight)
    check_norm(norm)
    if not isinstance(model_run, Mapping) or not isinstance(first_run, Mapping):
        raise ValueError("fuse_run takes runs as mappings {qid: {docid: score}}")
    return {qid: fuse(docs, first_run.get(qid, {}), weight, norm)
            for qid, docs in model_run.items()}
