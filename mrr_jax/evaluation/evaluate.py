"""Metrics of TREC run files against qrels (the ``python -m mrr_jax.evaluate`` command), and
the plan-grid table (quality against cost).

Command line::

    python -m mrr_jax.evaluate --run RUN [RUN ...] --qrels QRELS
        [--metrics RR@10 nDCG@10 R@100 AP] [--out results.json] [--per-query]
    python -m mrr_jax.evaluate grid ...        # the plan grid (``python -m mrr_jax.grid``)

The metrics themselves (ir-measures names and aliases, ranking order, which queries count) are
:mod:`mrr_jax.data.metrics`; they are re-exported here. Qrels may be BEIR TSV (``query-id
corpus-id score``, header optional) or TREC (``qid 0 docid rel``); the format is detected from
the first line.

:func:`grid_table` writes ``grid.json``, ``grid.md`` and ``grid.png`` from rows
``{"plan", "metrics", "flops", "seconds"}`` (the plan grid of the re-ranker; a baseline such as
BM25 is a row with ``"baseline": True`` or ``flops == 0``).
"""


from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.data import beir, trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike, atomic_write, atomic_write_bytes, iter_lines
from mrr_jax.data.metrics import (
    DEFAULT_METRICS,
    canonical_metric,
    evaluate_per_query,
    evaluate_run,
    evaluated_queries,
    format_table,
    format_value,
    mean_metrics,
    parse_metrics,
)
from mrr_jax.data.records import Qrels, Run
from mrr_jax.data.required import require_file

__all__ = ["DEFAULT_METRICS", "canonical_metric", "evaluate_per_query", "evaluate_run",
           "evaluated_queries", "format_table", "grid_table", "load_qrels_any", "main"]


def load_qrels_any(path: PathLike) -> Qrels:
    """Read qrels in BEIR TSV or TREC format, detected from the first non-blank line. A file
    without a judgement (empty, or only the BEIR header) is a :class:`DataError` naming it."""
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        if "\t" in text and len(text.split("\t")) == 3:
            qrels = beir.load_qrels(path)
        elif len(text.split()) == 4:
            qrels = trec.load_qrels(path)
        else:
            raise DataError("not a qrels file: expected 3 tab-separated columns (BEIR) or 4 "
                            "columns (TREC)", path=path, line=line, field="columns")
        if not qrels:
            raise DataError("no judgement in the file (only a header)", path=path)
        return qrels
    raise DataError("empty qrels file: no judgement", path=path)


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
        cells = [plan, *(format_value(row["metrics"].get(m)) for m in names),
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


def _check_overlap(run: Run, path: PathLike, evaluated: Sequence[str],
                   qrels_path: PathLike) -> None:
    """A run sharing no evaluated query with the qrels is an error (its metrics would all be
    zero): it names both sides, their sizes and an example id of each."""
    if any(q in run for q in evaluated):
        return
    mine = f"{len(run)} queries (e.g. {next(iter(run))!r})" if run else "no query"
    raise DataError(f"the run shares no query with the qrels: it has {mine}, {qrels_path} has "
                    f"{len(evaluated)} evaluated queries (e.g. {evaluated[0]!r}); are they of "
                    "the same dataset and split?", path=path)


def _evaluate(paths: Sequence[Path], qrels_path: Path, metrics: Sequence[str]
              ) -> dict[str, Any]:
    """``{run path: {"mean", "num_queries", "queries_in_run", "per_query"}}``."""
    parse_metrics(metrics)
    for path in paths:
        require_file(path, "--run")
    qrels = load_qrels_any(require_file(qrels_path, "--qrels"))
    evaluated = evaluated_queries(qrels)
    if not evaluated:
        raise DataError("no query with a relevant document (relevance > 0)", path=qrels_path)
    results: dict[str, Any] = {}
    for path in paths:
        run: Run = trec.load_run(path)
        _check_overlap(run, path, evaluated, qrels_path)
        per_query = evaluate_per_query(run, qrels, metrics)
        covered = sum(q in run for q in per_query)
        if covered < len(per_query):
            print(f"warning: {path} lacks {len(per_query) - covered} of the "
                  f"{len(per_query)} evaluated queries (they score 0)", file=sys.stderr)
        results[str(path)] = {"mean": mean_metrics(per_query, metrics),
                              "num_queries": len(per_query), "queries_in_run": covered,
                              "per_query": per_query}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The metrics command line (without the ``grid`` sub-command: that is
    :func:`mrr_jax.evaluation.cli.main`); returns the exit status (2 on bad input: a missing
    file, a run sharing no query with the qrels, qrels without a relevant document)."""
    args = _parser().parse_args(argv)
    try:
        results = _evaluate(args.run, args.qrels, args.metrics)
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
