"""Retrieval metrics of runs against qrels (plain records in, numbers out) and their table.

Metrics are computed by ``ir-measures`` (its trec_eval-compatible providers), never by hand.
Names are ir-measures names (``RR@10``, ``nDCG@10``, ``R@100``, ``AP``, ``P@5``, ...); the
aliases ``MRR@k``, ``Recall@k``, ``NDCG@k`` and ``MAP`` are accepted, and results are keyed by
the name as given. Conventions:

- Ranking order is :func:`mrr_jax.data.trec.ranking` (score descending, ties by docid
  ascending), the order :func:`mrr_jax.data.trec.write_run` writes ranks in; the run is
  re-scored by rank before evaluation so that every provider sees exactly that order.
- The evaluated queries are those of the qrels with at least one relevant document
  (relevance > 0). Such a query that the run lacks scores 0 on every metric (as
  ``trec_eval -c``); run queries absent from the qrels are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mrr_jax.data import trec

DEFAULT_METRICS: tuple[str, ...] = ("RR@10", "nDCG@10", "R@100")

_ALIASES = {"mrr": "RR", "rr": "RR", "recall": "R", "r": "R", "ndcg": "nDCG", "map": "AP",
            "ap": "AP", "p": "P", "precision": "P"}


def canonical_metric(name: str) -> str:
    """The ir-measures name of a metric: ``MRR@10 -> RR@10``, ``Recall@100 -> R@100``, ..."""
    m = re.fullmatch(r"([A-Za-z_]+)(.*)", name.strip())
    if not m:
        raise ValueError(f"unknown metric {name!r}")
    head, tail = m.groups()
    return _ALIASES.get(head.lower(), head) + tail


def parse_metrics(metrics: Sequence[str]) -> dict[str, Any]:
    """``{name as given: ir-measures measure}``; ``ValueError`` for an unknown or malformed
    name, or for none at all."""
    import ir_measures

    out = {}
    for name in metrics:
        try:  # parse_measure: ValueError for bad syntax, NameError for an unknown measure
            out[name] = ir_measures.parse_measure(canonical_metric(name))
        except (ValueError, NameError) as e:
            raise ValueError(f"unknown metric {name!r} ({e})") from None
    if not out:
        raise ValueError("no metrics given")
    return out


def evaluated_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The qrels queries with at least one relevant document (relevance > 0), in qrels order."""
    return [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]


def evaluate_per_query(run: Mapping[str, Mapping[str, float]],
                       qrels: Mapping[str, Mapping[str, int]],
                       metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """``{qid: {metric: value}}`` for every evaluated query (see the module docstring)."""
    import ir_measures

    measures = parse_metrics(metrics)
    qids = evaluated_queries(qrels)
    if not qids:
        raise ValueError("the qrels have no query with a relevant document")
    judged = {q: {d: int(r) for d, r in qrels[q].items()} for q in qids}
    ranked = {}
    for q in qids:
        docs = trec.ranking(run.get(q, {}))
        if docs:  # re-score by rank: every provider then sees exactly this order
            ranked[q] = {d: float(len(docs) - i) for i, (d, _) in enumerate(docs)}
    by_measure: dict[Any, list[str]] = {}
    for name, m in measures.items():
        by_measure.setdefault(m, []).append(name)
    values: dict[str, dict[str, float]] = {q: {} for q in qids}
    for res in ir_measures.iter_calc(list(by_measure), judged, ranked):
        if res.query_id in values:
            for name in by_measure[res.measure]:
                values[res.query_id][name] = float(res.value)
    return {q: {name: values[q].get(name, 0.0) for name in measures} for q in qids}


def mean_metrics(per_query: Mapping[str, Mapping[str, float]],
                 metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the queries of ``per_query``."""
    return {name: math.fsum(v[name] for v in per_query.values()) / len(per_query)
            for name in metrics}


def evaluate_run(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the evaluated queries: ``{metric name as given: mean}``."""
    return mean_metrics(evaluate_per_query(run, qrels, metrics), metrics)


def format_value(value: float | None, digits: int = 4) -> str:
    """A table cell: the value to ``digits`` decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[tuple[str, Mapping[str, float]]], metrics: Sequence[str],
                 first: str = "run") -> str:
    """A plain-text table: one row per ``(name, {metric: value})``, values to 4 decimals."""
    header = [first, *metrics]
    body = [[name, *(format_value(vals.get(m)) for m in metrics)] for name, vals in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


BOOTSTRAP = 10_000  # resamples of paired_bootstrap


def paired_bootstrap(before: Sequence[float], after: Sequence[float], seed: int = 0
                     ) -> dict[str, Any]:
    """Paired comparison of per-query values (the same queries, in the same order): the mean
    change ``after - before``, a bootstrap 95% interval of it (:data:`BOOTSTRAP` resamples of
    the queries with replacement, ``seed``), and how many queries went up / down / stayed."""
    import numpy as np

    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length, non-empty lists of values, "
                         f"got {np.shape(before)} and {np.shape(after)}")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(BOOTSTRAP, d.size))
    means = d[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"change": float(d.mean()), "ci95": [float(lo), float(hi)], "queries": int(d.size),
            "up": int((d > 0).sum()), "down": int((d < 0).sum()), "same": int((d == 0).sum())}
