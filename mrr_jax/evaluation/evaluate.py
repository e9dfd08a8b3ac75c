"""Retrieval metrics of TREC runs against qrels, and the plan-grid table (quality against cost).

Command line::

    python -m mrr_jax.evaluate --run RUN [RUN ...] --qrels QRELS
        [--metrics RR@10 nDCG@10 R@100 AP] [--out results.json] [--per-query]

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
- Qrels may be BEIR TSV (``query-id corpus-id score``, header optional) or TREC
  (``qid 0 docid rel``); the format is detected from the first line.

:func:`grid_table` writes ``grid.json``, ``grid.md`` and ``grid.png`` from rows
``{"plan", "metrics", "flops", "seconds"}`` (the plan grid of the re-ranker; a baseline such as
BM25 is a row with ``"baseline": True`` or ``flops == 0``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.data import beir, trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike, atomic_write, atomic_write_bytes, iter_lines
from mrr_jax.data.records import Qrels, Run

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


def _measures(metrics: Sequence[str]) -> dict[str, Any]:
    import ir_measures

    out = {}
    for name in metrics:
        try:
            out[name] = ir_measures.parse_measure(canonical_metric(name))
        except (ValueError, NameError, SyntaxError, TypeError) as e:
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

    measures = _measures(metrics)
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


def evaluate_run(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the evaluated queries: ``{metric name as given: mean}``."""
    per_query = evaluate_per_query(run, qrels, metrics)
    return {name: math.fsum(v[name] for v in per_query.values()) / len(per_query)
            for name in metrics}


def load_qrels_any(path: PathLike) -> Qrels:
    """Read qrels in BEIR TSV or TREC format, detected from the first non-blank line."""
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        if "\t" in text and len(text.split("\t")) == 3:
            return beir.load_qrels(path)
        if len(text.split()) == 4:
            return trec.load_qrels(path)
        raise DataError("not a qrels file: expected 3 tab-separated columns (BEIR) or 4 "
                        "columns (TREC)", path=path, line=line, field="columns")
    raise DataError("empty qrels file", path=path)


def format_table(rows: Sequence[tuple[str, Mapping[str, float]]], metrics: Sequence[str],
                 first: str = "run") -> str:
    """A plain-text table: one row per ``(name, {metric: value})``, values to 4 decimals."""
    header = [first, *metrics]
    body = [[name, *(_fmt(vals.get(m)) for m in metrics)] for name, vals in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- plan grid


def _is_baseline(row: Mapping[str, Any]) -> bool:
    return bool(row.get("baseline")) or row.get("flops") == 0


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        raise ValueError("grid_table needs at least one row")
    names: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row.get("plan"), str) or not isinstance(row.get("metrics"), Mapping):
            raise ValueError(f"grid row {i} needs 'plan' (str) and 'metrics' (dict): {row!r}")
        for k in ("flops", "seconds"):
            if k in row and row[k] is not None and not isinstance(row[k], int | float):
                raise ValueError(f"grid row {i}: {k!r} must be a number, got {row[k]!r}")
        for name in row["metrics"]:
            if name not in names:
                names.append(name)
    return names


def grid_table(rows: Sequence[Mapping[str, Any]], out_dir: PathLike, *,
               metric: str | None = None, cost: str = "flops") -> dict[str, Path]:
    """Write the plan grid: ``grid.json``, ``grid.md`` and ``grid.png`` under ``out_dir``.

    ``rows``: ``{"plan": str, "metrics": {name: value}, "flops": float, "seconds": float}``,
    in the order to show them; a row with ``"baseline": True`` or ``flops == 0`` (e.g. BM25) is
    a baseline, drawn as a horizontal line rather than a point. ``metric``: the quality axis
    (default ``nDCG@10`` when present, else the first metric); ``cost``: the cost axis,
    ``"flops"`` or ``"seconds"``. Returns ``{"json": path, "md": path, "png": path}``.
    """
    names = _check_rows(rows)
    if metric is None:
        metric = "nDCG@10" if "nDCG@10" in names else names[0]
    if metric not in names:
        raise ValueError(f"metric {metric!r} is in no row (have {names})")
    if cost not in ("flops", "seconds"):
        raise ValueError(f"cost must be 'flops' or 'seconds', got {cost!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "grid.json", "md": out / "grid.md", "png": out / "grid.png"}
    doc = {"metric": metric, "cost": cost, "metrics": names,
           "rows": [{**row, "baseline": _is_baseline(row)} for row in rows]}
    with atomic_write(paths["json"]) as f:
        f.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    with atomic_write(paths["md"]) as f:
        f.write(_grid_markdown(rows, names))
    atomic_write_bytes(paths["png"], _grid_png(rows, metric, cost))
    return paths


def _grid_markdown(rows: Sequence[Mapping[str, Any]], names: list[str]) -> str:
    header = ["plan", *names, "GFLOPs", "seconds"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    for row in rows:
        flops, secs = row.get("flops"), row.get("seconds")
        plan = row["plan"].replace("|", "\\|") + (" (baseline)" if _is_baseline(row) else "")
        cells = [plan, *(_fmt(row["metrics"].get(m)) for m in names),
                 "-" if flops is None else f"{flops / 1e9:.4g}",
                 "-" if secs is None else f"{secs:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grid_png(rows: Sequence[Mapping[str, Any]], metric: str, cost: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = [r for r in rows if not _is_baseline(r) and r["metrics"].get(metric) is not None
              and r.get(cost) is not None]
    xs = [float(r[cost]) / (1e9 if cost == "flops" else 1.0) for r in points]
    ys = [float(r["metrics"][metric]) for r in points]
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    for x, y, r in zip(xs, ys, points):
        ax.annotate(r["plan"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    colors = ["tab:red", "tab:green", "tab:purple", "tab:brown"]
    for i, r in enumerate(r for r in rows if _is_baseline(r)):
        if r["metrics"].get(metric) is not None:
            ax.axhline(float(r["metrics"][metric]), linestyle="--", color=colors[i % 4],
                       label=f"{r['plan']} (baseline)")
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("GFLOPs" if cost == "flops" else "seconds")
    ax.margins(x=0.12, y=0.08)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against cost, one point per plan")
    ax.grid(True, alpha=0.3)
    if any(_is_baseline(r) for r in rows):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.evaluate",
        description="Metrics of TREC run files against qrels (BEIR TSV or TREC, detected), "
                    "computed by ir-measures. Prints a table of means; --out writes JSON with "
                    "means and per-query values.")
    p.add_argument("--run", nargs="+", required=True, type=Path, metavar="RUN",
                   help="TREC run file(s): qid Q0 docid rank score tag")
    p.add_argument("--qrels", required=True, type=Path,
                   help="qrels: BEIR qrels/<split>.tsv or TREC qrels (qid 0 docid rel)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="M",
                   help="ir-measures names, e.g. RR@10 nDCG@10 R@100 AP P@5 (aliases MRR@k, "
                        "Recall@k, NDCG@k, MAP); default: %(default)s")
    p.add_argument("--out", type=Path, help="write results JSON here")
    p.add_argument("--per-query", action="store_true", help="also print per-query values")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status. ``grid ...`` runs the plan-grid
    mode (``python -m mrr_jax.evaluate grid --help``, the same as ``python -m mrr_jax.grid``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grid"]:
        from mrr_jax.evaluation.grid import main as grid_main

        return grid_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        _measures(args.metrics)
        qrels = load_qrels_any(args.qrels)
        results: dict[str, Any] = {}
        for path in args.run:
            run: Run = trec.load_run(path)
            per_query = evaluate_per_query(run, qrels, args.metrics)
            mean = {m: math.fsum(v[m] for v in per_query.values()) / len(per_query)
                    for m in args.metrics}
            covered = sum(q in run for q in per_query)
            if covered < len(per_query):
                print(f"warning: {path} lacks {len(per_query) - covered} of the "
                      f"{len(per_query)} evaluated queries (they score 0)", file=sys.stderr)
            results[str(path)] = {"mean": mean, "num_queries": len(per_query),
                                  "queries_in_run": covered, "per_query": per_query}
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table([(name, r["mean"]) for name, r in results.items()], args.metrics))
    if args.per_query:
        for name, r in results.items():
            print(f"\n{name}")
            print(format_table(list(r["per_query"].items()), args.metrics, first="qid"))
    if args.out:
        with atomic_write(args.out) as f:
            f.write(json.dumps({"qrels": str(args.qrels), "metrics": list(args.metrics),
                                "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
