"""Cascade rows of the plan grid (``python -m mrr_jax.grid --cascades ...``): one cascade run
over the grid's queries, its final order evaluated like a plan's run, its cost counted from
what each stage ran."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from mrr_jax.core.plan import Plan
from mrr_jax.data.metrics import evaluate_per_query, mean_metrics


def cascade_row(rr, g, text: str, metrics: Sequence[str], batch_size: int,
                progress: bool, warmup_queries: int = 8) -> dict[str, Any]:
    """One cascade's grid row on ``g`` (``evaluation.grid.GridPairs``). Its run ranks each
    query's candidates in the cascade's final order (scores counting down). ``flops``:
    predicted FLOPs per candidate pair, from what each stage ran on each pair
    (:meth:`Plan.flops` on its real lengths, a resumed stage counting only its layers past
    the previous depth); ``seconds``: the timed run over every query, after an untimed run
    over the first ``warmup_queries`` (most programs compiled there; a shape first met later
    compiles inside the timing)."""
    from mrr_jax.inference.cascade import run_cascade

    c = rr.resolve_cascade(text)
    by_query: dict[str, list[int]] = {}
    for i, (qid, _) in enumerate(g.keys):
        by_query.setdefault(qid, []).append(i)
    groups = list(by_query.values())
    encoded = [[g.encoded[i] for i in idx] for idx in groups]
    t0 = time.perf_counter()
    run_cascade(rr, encoded[:warmup_queries], c, batch_size=batch_size)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results, stats = run_cascade(rr, encoded, c, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    reranked: dict[str, dict[str, float]] = {}
    total = 0.0
    for idx, r in zip(groups, results):
        qid = g.keys[idx[0]][0]
        reranked[qid] = {g.keys[idx[d]][1]: float(len(idx) - k) for k, d in enumerate(r.order)}
        for d, last in enumerate(r.stage):
            e = g.encoded[idx[d]]
            lengths = (len(e.query), len(e.passage), len(e.prompt))
            for s in range(int(last) + 1):
                f = c.stages[s].plan.flops(rr.cfg, *lengths)
                if stats.resumed[s]:
                    f -= c.stages[s - 1].plan.flops(rr.cfg, *lengths)
                total += f
    pairs = len(g.encoded)
    full = Plan().resolve(rr.cfg.num_layers)
    full_flops = math.fsum(full.flops(rr.cfg, len(e.query), len(e.passage), len(e.prompt))
                           for e in g.encoded) / pairs
    per_query = evaluate_per_query(reranked, g.judged, metrics)
    row = {
        "plan": str(text), "plan_resolved": str(c), "kind": "cascade",
        "metrics": mean_metrics(per_query, metrics), "per_query": per_query,
        "flops": total / pairs, "flops_rel": total / pairs / full_flops, "seconds": seconds,
        "compile_seconds": compile_s, "pairs": pairs, "stage_pairs": stats.pairs,
        "resumed": stats.resumed, "pairs_per_second": pairs / seconds if seconds > 0 else None,
        "queries": len(g.qids), "truncated": g.truncated}
    if progress:
        print(f"grid: {text}: {row['metrics']} in {seconds:.1f} s (+{compile_s:.1f} s "
              f"warm-up), {row['flops_rel']:.3f} of the full FLOPs", file=sys.stderr)
    return row


