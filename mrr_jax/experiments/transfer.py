"""Transfer to text the models never saw: BM25, zero-shot and trained models on the Debian
Reference set (``mrr_jax.data.debref``), at every plan, with paired-bootstrap intervals.

    python -m mrr_jax.transfer --out out/transfer [--data data/debref]
        [--config configs/smollm2_135m_demo.py] [--top-k 10] [--max-queries N]
        --model "stage 1=out/demo/stage1/adapters/stage1"
        --model "stage 1 + compensation=out/demo/stage1/adapters/stage1,$(ls -d \
            out/demo/stage2/adapters/* | paste -sd,)"

The set is built into ``--data`` if it is not there (it needs ``debian-reference-en``; the
builder says how to install it). Every model is the config's base model (its exit heads, its
training lengths for cutting the text) plus the adapters named after ``=``; zero-shot (no
adapters) is always the first row, and every other model's MRR@10 change is against it, plan by
plan, over the same queries. The config's ``eval.plans`` are the plans. The set is never used to
train or to choose anything: this command only reports. Writes ``OUT/transfer.{md,json,png}``
and each model's grid under ``OUT/grids/<name>/``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.experiments.demo import CONFIG, grid, load, write_report


def parse_model(text: str) -> tuple[str, list[str]]:
    """``"name=dir1,dir2"`` -> (name, [dir1, dir2]); each folder must exist."""
    name, sep, dirs = text.partition("=")
    name = name.strip()
    if not sep or not name or not dirs.strip():
        raise ValueError(f"--model {text!r}: expected NAME=ADAPTER_DIR[,ADAPTER_DIR...]")
    folders = [d.strip() for d in dirs.split(",") if d.strip()]
    missing = [d for d in folders if not Path(d).is_dir()]
    if missing:
        raise ValueError(f"--model {name}: no adapter folder {missing[0]} (train it first)")
    return name, folders


def ensure_set(data: Path) -> Path:
    """The Debian Reference set in ``data`` (built there once)."""
    from mrr_jax.data import debref

    if not (data / "stats.json").is_file():
        code = debref.main([str(data)])
        if code:
            raise SystemExit(code)
    return data


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "model"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mrr_jax.transfer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/transfer"))
    p.add_argument("--data", type=Path, default=Path("data/debref"),
                   help="the Debian Reference set (built here if missing)")
    p.add_argument("--config", default=str(CONFIG), help="the models' training config: base "
                   "model, heads, text lengths, eval.plans")
    p.add_argument("--model", action="append", default=[], metavar="NAME=DIRS",
                   help="a trained model: its adapter folders, comma-separated (repeatable)")
    p.add_argument("--top-k", type=int, default=10, help="BM25 candidates per query")
    p.add_argument("--max-queries", type=int, help="only the first N queries in qid order")
    args = p.parse_args(argv)
    try:
        models = [parse_model(m) for m in args.model]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    data = ensure_set(args.data)
    plans = tuple(load(args.config, "stage1").eval.plans)
    kw = dict(data=data, out=args.out, config=args.config, plans=plans,
              max_queries=args.max_queries, top_k=args.top_k)
    grids = {"zero-shot": grid("zero-shot", [], **kw)}
    for name, folders in models:
        print(f"[{time.time() - t0:6.0f} s] {name}", file=sys.stderr, flush=True)
        grids[name] = grid(_slug(name), folders, **kw)
    table = write_report(args.out, "transfer", grids, {
        "data": str(data), "config": str(args.config), "top_k": args.top_k,
        "max_queries": args.max_queries, "models": dict(models),
        "seconds": round(time.time() - t0, 1)},
        title="SmolLM2-135M Matryoshka re-ranker, Debian Reference (never trained on)")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
