"""Long documents: truncation against windows (MaxP, FirstP, mean) on one split, with
paired-bootstrap intervals.

    python -m mrr_jax.windows --model smollm2 [--adapters DIR ...] --data BEIR_DIR \\
        --split test --first-stage BEIR_DIR/bm25/test.trec --top-k 10 --max-length 64 \\
        --query-max-length 16 [--plan full] [--windows "max_windows=8"] [--max-queries N] \\
        --out OUT

The ``--top-k`` first-stage candidates of every evaluated query (the plan grid's pairs,
``evaluation.grid.grid_pairs``) are re-ranked once with every passage truncated to
``--max-length`` (the usual scoring), and once as windows
(:class:`~mrr_jax.core.windows.WindowSpec` settings ``--windows``: ``size``, ``stride``,
``max_windows``; default all the passage room, half of it, no cap). The window scores of that
one pass give each aggregation (``max``: MaxP, ``first``: FirstP, ``mean``); FirstP scores
one window per document, so its cost counts the first windows only. Every row is evaluated
(MRR@10, nDCG@10) and compared with truncation over the same queries
(``data.metrics.paired_bootstrap``, 10,000 resamples); its cost is the number of windows per
document and the predicted FLOPs relative to truncation (:meth:`Plan.flops` on every scored
window's real lengths). Writes ``OUT/windows.json`` and ``OUT/windows.md``.

Settings are fixed a priori: never tune ``--windows`` on a test split.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.core.windows import AGGREGATIONS, WindowSpec, aggregate
from mrr_jax.data import beir
from mrr_jax.data.metrics import evaluate_per_query, mean_metrics, paired_bootstrap
from mrr_jax.data.units import passage_of
from mrr_jax.evaluation.grid import (
    GridPairs,
    check_inputs,
    grid_metrics,
    grid_pairs,
    plan_row,
    precompile,
    score_plan,
)
from mrr_jax.inference.windows import encode_windows
from mrr_jax.inputs.batching import plan_batches
from mrr_jax.inputs.windows import WindowSet

COMPARED = ("RR@10", "nDCG@10")


def window_rows(rr, g: GridPairs, ws: WindowSet, plan, aggregations: Sequence[str], *,
                batch_size: int, progress: bool = False) -> list[dict[str, Any]]:
    """One row per aggregation: the windows ``ws`` of ``g``'s pairs (every window, as MaxP
    splits them) scored once under resolved ``plan``, aggregated each way and evaluated on
    ``g``'s qrels."""
    spec = ws.spec
    batches = plan_batches(ws.windows, batch_size)
    compile_s = precompile(rr, ws.windows, batches, plan, (plan.depth,), batch_size)
    from tqdm import tqdm

    with tqdm(total=len(ws.windows), unit="window", desc="windows", disable=not progress,
              file=sys.stderr) as bar:
        t0 = time.perf_counter()
        scores = score_plan(rr, ws.windows, batches, plan, batch_size, bar.update)[0]
        seconds = time.perf_counter() - t0
    counts = ws.counts
    first = np.searchsorted(ws.owner, np.arange(ws.documents))
    trunc = ws.truncation_flops(rr.cfg, plan)
    rows = []
    for how in aggregations:
        agg = aggregate(scores, ws.owner, ws.documents, how)
        run: dict[str, dict[str, float]] = {}
        for (qid, docid), s in zip(g.keys, agg):
            run.setdefault(qid, {})[docid] = float(s)
        per_query = evaluate_per_query(run, g.judged, COMPARED)
        if how == "first":
            n_windows = ws.documents
            flops = math.fsum(plan.flops(rr.cfg, len(ws.windows[i].query),
                                         len(ws.windows[i].passage),
                                         len(ws.windows[i].prompt)) for i in first)
            cut = int(((counts > 1) | ws.cut).sum())
        else:
            n_windows, flops, cut = len(ws.windows), ws.flops(rr.cfg, plan), int(ws.cut.sum())
        rows.append({"name": how, "windows": str(WindowSpec(how, spec.size, spec.stride,
                                                             spec.max_windows)),
                     "metrics": mean_metrics(per_query, COMPARED), "per_query": per_query,
                     "windows_scored": n_windows, "mean_windows": n_windows / ws.documents,
                     "documents_cut": cut, "flops": flops, "flops_rel": flops / trunc,
                     "seconds": seconds, "compile_seconds": compile_s})
    return rows


def compare(rows: Sequence[dict[str, Any]], base: dict[str, Any]) -> None:
    """Adds to each row its paired-bootstrap change against ``base`` (per metric)."""
    qids = sorted(base["per_query"])
    for r in rows:
        r["vs_truncation"] = {m: paired_bootstrap(
            [base["per_query"][q][m] for q in qids], [r["per_query"][q][m] for q in qids])
            for m in COMPARED}


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per way of scoring long documents (and the first stage)."""
    head = ["scoring", "MRR@10", "nDCG@10", "MRR@10 vs truncation [95% CI]",
            "nDCG@10 vs truncation [95% CI]", "windows / doc", "FLOPs vs truncation",
            "docs not scored whole"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in result["rows"]:
        m = r["metrics"]
        cells = [r["label"], f"{m['RR@10']:.3f}", f"{m['nDCG@10']:.3f}"]
        for k in COMPARED:
            d = r.get("vs_truncation", {}).get(k)
            cells.append("-" if d is None or r["name"] == "truncation" else
                         f"{d['change']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        cells += ["-" if r.get("mean_windows") is None else f"{r['mean_windows']:.2f}",
                  "-" if r.get("flops_rel") is None else f"{r['flops_rel']:.2f}",
                  str(r.get("documents_cut", "-"))]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["settings"]
    return (f"{result['queries']} queries of split `{s['split']}`, {result['documents']} "
            f"documents (first stage top {s['top_k']}), plan `{s['plan']}`, max_length "
            f"{s['max_length']}, query_max_length {s['query_max_length']}; windows "
            f"`{s['windows']}`; passages of {result['passage_tokens']['median']:.0f} tokens "
            f"(median; mean {result['passage_tokens']['mean']:.0f}, max "
            f"{result['passage_tokens']['max']}), {result['truncated']} of "
            f"{result['documents']} truncated without windows.\n\n" + "\n".join(lines) + "\n")


def run(rr, data: Path, split: str, first_stage: Path, *, plan: str = "full",
        spec: WindowSpec | None = None, aggregations: Sequence[str] = AGGREGATIONS,
        top_k: int = 10, max_queries: int | None = None, batch_size: int = 16,
        max_length: int = 512, query_max_length: int | None = None,
        progress: bool = False) -> dict[str, Any]:
    """The comparison as a JSON-ready dict: ``settings``, ``queries``, ``documents``,
    ``truncated``, ``passage_tokens`` and ``rows`` (truncation, each aggregation, the first
    stage), each with ``metrics``, ``per_query`` and, against truncation, ``vs_truncation``."""
    spec = spec or WindowSpec()
    resolved = rr.resolve_plan(plan)
    g = grid_pairs(rr, data, split, first_stage, top_k, max_queries, batch_size=batch_size,
                   tokens_per_batch=None, max_length=max_length,
                   query_max_length=query_max_length)
    corpus, queries, _ = beir.load_split(data, split)
    pairs = [(queries[q], passage_of(corpus[d])) for q, d in g.keys]
    ws = encode_windows(rr, pairs, WindowSpec("max", spec.size, spec.stride, spec.max_windows),
                        max_length, query_max_length)
    base = plan_row(rr, g, resolved, grid_metrics(top_k), batch_size, progress)
    base.update(name="truncation", label="truncation", mean_windows=1.0, flops_rel=1.0,
                documents_cut=g.truncated)
    rows = window_rows(rr, g, ws, resolved, aggregations, batch_size=batch_size,
                       progress=progress)
    for r in rows:
        r["label"] = {"max": "MaxP (max)", "first": "FirstP (first)",
                      "mean": "mean"}[r["name"]]
    compare([base, *rows], base)
    first = evaluate_per_query(g.first, g.judged, COMPARED)
    bm25 = {"name": "first stage", "label": "BM25 (first stage)" if "bm25" in str(
        first_stage).lower() else "first stage", "per_query": first,
        "metrics": mean_metrics(first, COMPARED)}
    lengths = ws.passage_length
    return {
        "settings": {"split": split, "top_k": top_k, "plan": str(resolved),
                     "max_length": max_length, "query_max_length": query_max_length,
                     "windows": str(spec), "aggregations": list(aggregations),
                     "max_queries": max_queries, "batch_size": batch_size},
        "queries": len(g.qids), "documents": len(g.keys), "truncated": g.truncated,
        "passage_tokens": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                           "max": int(lengths.max())},
        "rows": [base, *rows, bm25]}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mrr_jax.windows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="HF directory, .gguf, or 'smollm2'")
    p.add_argument("--adapters", nargs="+", default=[], help="adapter folders (per plan)")
    p.add_argument("--data", required=True, type=Path, help="BEIR folder")
    p.add_argument("--split", default="dev", help="qrels split (default %(default)s)")
    p.add_argument("--first-stage", required=True, type=Path, help="first-stage TREC run")
    p.add_argument("--top-k", type=int, default=10, help="candidates per query")
    p.add_argument("--max-queries", type=int, help="only the first N evaluated queries")
    p.add_argument("--plan", default="full", help="the plan (default %(default)s)")
    p.add_argument("--windows", default="", metavar="size=N,stride=N,max_windows=N",
                   help="window settings (any subset; an aggregation prefix is ignored: every "
                   "one of --aggregations is computed); default: all the passage room, half "
                   "of it as the stride, no cap")
    p.add_argument("--aggregations", default=",".join(AGGREGATIONS),
                   help="comma-separated, of " + ", ".join(AGGREGATIONS))
    p.add_argument("--max-length", type=int, default=512, help="default %(default)s")
    p.add_argument("--query-max-length", type=int)
    p.add_argument("--batch-size", type=int, default=16, help="default %(default)s")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--out", type=Path, required=True, help="folder for windows.json/.md")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def parse_settings(text: str) -> WindowSpec:
    """``--windows``: ``"size=N,stride=N,max_windows=N"`` (or a full spec text, whose
    aggregation is ignored) as a spec."""
    text = text.strip()
    if not text:
        return WindowSpec()
    return WindowSpec.parse(text if text.split(":")[0] in AGGREGATIONS else "max:" + text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    from mrr_jax.data.errors import DataError

    args = _parser().parse_args(argv)
    t0 = time.time()
    try:
        spec = parse_settings(args.windows)
        spec.check(args.max_length)
        aggs = [a.strip() for a in args.aggregations.split(",") if a.strip()]
        for a in aggs:
            WindowSpec(a)
        check_inputs(args.data, args.split, args.first_stage)
        from mrr_jax.inference.reranker import Reranker
        from mrr_jax.weights.assets import model_path

        rr = Reranker.from_pretrained(model_path(args.model), dtype=args.dtype,
                                      adapters=args.adapters)
        result = run(rr, args.data, args.split, args.first_stage, plan=args.plan, spec=spec,
                     aggregations=aggs, top_k=args.top_k, max_queries=args.max_queries,
                     batch_size=args.batch_size, max_length=args.max_length,
                     query_max_length=args.query_max_length, progress=args.progress)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["settings"].update(model=args.model, adapters=list(args.adapters),
                              data=str(args.data), first_stage=str(args.first_stage))
    result["seconds"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(result)
    (args.out / "windows.md").write_text(text)
    (args.out / "windows.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out / 'windows.json'}, windows.md ({result['seconds']:.0f} s)")
    return 0
