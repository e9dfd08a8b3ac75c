"""Choosing the first-stage fusion weight on dev qrels (``python -m mrr_jax.fusion``).

Command line::

    python -m mrr_jax.fusion --run MODEL_RUN.trec --first-stage BM25.trec --qrels DEV_QRELS
        [--top-k K] [--weights 0,0.1,...,1] [--norm minmax|zscore] [--metric RR@10]
        [--out fusion.json]

For each weight ``w`` the model run is fused with the first-stage run
(:func:`mrr_jax.data.fusion.fuse_run`: ``(1 - w) * model + w * first stage``, each normalised
per query over its candidates) and evaluated (:mod:`mrr_jax.data.metrics`). Weights 0 (the
model alone) and 1 (the first stage's order) are always evaluated. The chosen weight is the
best on ``--metric`` (ties: the smaller weight, i.e. closer to the model alone); paired
bootstrap 95% intervals (:func:`~mrr_jax.data.metrics.paired_bootstrap`) compare it with
weight 0 and with weight 1, per query.

The qrels must be a dev split: a weight chosen on the test qrels overstates what fusion gives.
Pass the chosen weight to the scoring job on test (``python -m mrr_jax.score ... --fuse W``).

Candidates: a query's candidates are the documents of the model run (the job's top-k); with
``--top-k K`` only those among the first stage's K best (as the job's ``--top-k``). Evaluated
queries: those of the qrels with a relevant document that the model run holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.data import trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import atomic_write
from mrr_jax.data.fusion import NORMS, check_norm, check_weight, fuse_run
from mrr_jax.data.metrics import (
    canonical_metric,
    evaluate_per_query,
    evaluated_queries,
    format_table,
    mean_metrics,
    paired_bootstrap,
    parse_metrics,
)
from mrr_jax.data.records import Qrels, Run
from mrr_jax.data.required import require_file
from mrr_jax.evaluation.evaluate import load_qrels_any

TABLE_METRICS = ("MRR@10", "nDCG@10")
DEFAULT_WEIGHTS = tuple(i / 10 for i in range(11))


def parse_weights(text: str | Sequence[float]) -> list[float]:
    """``"0,0.1,0.5"`` (or numbers) -> sorted unique weights in [0, 1], with 0 and 1 added."""
    parts = [p.strip() for p in text.split(",") if p.strip()] if isinstance(text, str) \
        else list(text)
    if not parts:
        raise ValueError("--weights: no weight given")
    out = set()
    for p in parts:
        try:
            w = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"--weights: {p!r} is not a number") from None
        out.add(check_weight(w))
    return sorted(out | {0.0, 1.0})


def table_metrics(metric: str) -> tuple[list[str], str]:
    """The metrics to compute (MRR@10, nDCG@10, and ``metric`` when it is another) and the
    name under which ``metric`` is found among them."""
    parse_metrics([metric])
    names = list(TABLE_METRICS)
    for name in names:
        if canonical_metric(name) == canonical_metric(metric):
            return names, name
    return [*names, metric], metric


def candidates(model_run: Run, first_run: Run, top_k: int | None) -> tuple[Run, Run]:
    """The model run and the first-stage run over each query's candidates (the model run's
    documents; with ``top_k``, only those among the first stage's ``top_k`` best)."""
    if top_k is None:
        return model_run, first_run
    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    first = trec.top_k(first_run, top_k)
    model = {q: {d: s for d, s in docs.items() if d in first.get(q, {})}
             for q, docs in model_run.items()}
    return {q: docs for q, docs in model.items() if docs}, first


def choose(means: Mapping[float, Mapping[str, float]], metric: str) -> float:
    """The weight with the best mean ``metric``; ties go to the smaller weight."""
    return max(sorted(means), key=lambda w: means[w][metric])  # max keeps the first best


def sweep(model_run: Run, first_run: Run, qrels: Qrels, weights: Sequence[float], *,
          norm: str = "minmax", metric: str = "RR@10", top_k: int | None = None,
          seed: int = 0) -> dict[str, Any]:
    """Every weight of ``weights`` (0 and 1 added) evaluated on the queries of ``qrels`` with a
    relevant document that ``model_run`` holds; the chosen weight and its paired-bootstrap
    comparisons with weight 0 (the model alone) and weight 1 (the first stage)."""
    check_norm(norm)
    grid = parse_weights(weights)
    names, key = table_metrics(metric)
    model, first = candidates(model_run, first_run, top_k)
    judged = {q: qrels[q] for q in evaluated_queries(qrels) if q in model}
    if not judged:
        raise DataError(f"the model run shares no query with the qrels' "
                        f"{len(evaluated_queries(qrels))} queries with a relevant document; "
                        "are they of the same dataset and split?")
    if not any(q in first for q in judged):
        raise DataError("the first-stage run shares no evaluated query with the model run")
    per_query = {w: evaluate_per_query(fuse_run({q: model[q] for q in judged}, first, w, norm),
                                       judged, names) for w in grid}
    means = {w: mean_metrics(pq, names) for w, pq in per_query.items()}
    best = choose(means, key)
    qids = list(judged)

    def versus(ref: float) -> dict[str, Any]:
        return paired_bootstrap([per_query[ref][q][key] for q in qids],
                                [per_query[best][q][key] for q in qids], seed=seed)

    return {"norm": norm, "metric": key, "metrics": names, "top_k": top_k,
            "queries": len(qids), "queries_without_first_stage": sum(q not in first
                                                                      for q in qids),
            "weights": [{"weight": w, "metrics": means[w]} for w in grid],
            "chosen": {"weight": best, key: means[best][key]},
            "vs_model": versus(0.0), "vs_first_stage": versus(1.0)}


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.fusion",
        description="Choose the first-stage fusion weight W of python -m mrr_jax.score --fuse W: "
                    "the model run fused with the first-stage run, (1 - W) * model + W * first "
                    "stage (each normalised per query), evaluated at each weight. The qrels "
                    "MUST be a dev split, never test: a weight chosen on the test qrels "
                    "overstates what fusion gives.")
    p.add_argument("--run", required=True, type=Path, metavar="MODEL_RUN",
                   help="the re-ranker's TREC run (the job's OUT/run.trec, or run.model.trec "
                        "of a --fuse job) on the dev queries")
    p.add_argument("--first-stage", required=True, type=Path, metavar="RUN",
                   help="the first-stage TREC run the model re-ranked (e.g. BM25; the job's "
                        "--run)")
    p.add_argument("--qrels", required=True, type=Path,
                   help="DEV qrels (never test): BEIR qrels/dev.tsv or TREC qrels")
    p.add_argument("--top-k", type=int, metavar="K",
                   help="only the first stage's K best are candidates (as the job's --top-k); "
                        "default: the model run's documents")
    p.add_argument("--weights", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS),
                   help="comma-separated weights in [0, 1] (0 and 1 are always added); "
                        "default: %(default)s")
    p.add_argument("--norm", choices=NORMS, default="minmax",
                   help="per-query normalisation (default %(default)s)")
    p.add_argument("--metric", default="RR@10", help="the metric the weight is chosen on "
                   "(ir-measures name or alias; default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, metavar="F", help="write the results as JSON here")
    return p


def _ci(cmp: Mapping[str, Any]) -> str:
    lo, hi = cmp["ci95"]
    return (f"{cmp['change']:+.4f} [95% CI {lo:+.4f}, {hi:+.4f}]; {cmp['up']} up, "
            f"{cmp['down']} down, {cmp['same']} same")


def report(result: Mapping[str, Any]) -> str:
    """The table (one row per weight) and the chosen weight, as printed."""
    rows = [(f"{r['weight']:g}", r["metrics"]) for r in result["weights"]]
    key, w = result["metric"], result["chosen"]["weight"]
    lines = [format_table(rows, result["metrics"], first="weight"), "",
             f"chosen weight: {w:g} (best {key} on {result['queries']} dev queries, "
             f"{result['chosen'][key]:.4f}; ties go to the smaller weight)",
             f"  vs the model alone (w=0):  {_ci(result['vs_model'])}",
             f"  vs the first stage (w=1):  {_ci(result['vs_first_stage'])}",
             f"use it on test: python -m mrr_jax.score ... --fuse {w:g} --fuse-norm "
             f"{result['norm']}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input: a missing file, no
    shared query, a bad weight or metric)."""
    args = _parser().parse_args(argv)
    try:
        model = trec.load_run(require_file(args.run, "--run"))
        first = trec.load_run(require_file(args.first_stage, "--first-stage"))
        qrels = load_qrels_any(require_file(args.qrels, "--qrels"))
        result = sweep(model, first, qrels, parse_weights(args.weights), norm=args.norm,
                       metric=args.metric, top_k=args.top_k, seed=args.seed)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result["queries_without_first_stage"]:
        print(f"warning: {result['queries_without_first_stage']} evaluated queries have no "
              "first-stage scores (their first-stage term is 0)", file=sys.stderr)
    print(report(result))
    if args.out:
        doc = {"run": str(args.run), "first_stage": str(args.first_stage),
               "qrels": str(args.qrels), **result}
        with atomic_write(args.out) as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
