"""The paper's central claim in miniature: what makes a cut model keep its precision?

    python -m mrr_jax.ablation [--out out/ablation] [--demo out/demo] [--steps 40]
                               [--stage2-steps 20] [--max-queries 10] [--top-k 20]

Four ways to train the same base (SmolLM2-135M, ``configs/smollm2_135m.py``) with the same
stage-1 budget (``--steps`` optimizer steps, same data order and seed), each scored on the
example test split under the demo's plan grid (nDCG@10 at every plan):

    (i)   last exit    fine-tune the last exit only (CE at exit L, no width sampling)
    (ii)  CE all       CE at every exit over sampled sub-models (train_method "normal")
    (iii) cascade      (ii) + cascaded self-distillation from full-width anchors (stage 1)
    (iv)  + comp       (iii) + joint V/H compensation LoRA (``--stage2-steps`` more steps)

(iii) and (iv) are exactly the demo's stage 1 and stage 2: with ``--demo OUT`` their
adapters and grids are reused from a finished ``make demo``. Writes
``OUT/ablation.{md,json,png}``; every run and grid is resumable.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.experiments.demo import CONFIG, ensure_data, grid, load, train_stage, write_report
from mrr_jax.training.state import adapter_folder
from mrr_jax.weights.adapters import AdapterRole

STAGE1 = AdapterRole("stage1")

VARIANTS = {
    "(i) last exit": ["loss.exits='last'", "compress.ratios=(1,)", "loss.self=0.0"],
    "(ii) CE all exits": ["loss.self=0.0"],
    "(iii) cascade": [],
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mrr_jax.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/ablation"))
    p.add_argument("--demo", type=Path, help="a finished demo folder: reuse its data, "
                   "stage 1 (iii) and stage 2 (iv)")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--steps", type=int, help="stage-1 steps (default: the config's)")
    p.add_argument("--stage2-steps", type=int, help="stage-2 steps (default: the config's)")
    p.add_argument("--max-queries", type=int, help="test queries (default: all)")
    p.add_argument("--top-k", type=int, default=10)
    args = p.parse_args(argv)

    t0 = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.demo:  # share the demo's runs and grids (same config, data and seed)
        for sub in ("data", "stage1", "stage2", "grids/stage1", "grids/compensated"):
            src, dst = args.demo / sub, out / sub
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst)
    data = ensure_data(out)
    plans = tuple(load(args.config, "stage1").eval.plans)
    kw = dict(data=data, out=out, config=args.config, plans=plans,
              max_queries=args.max_queries, top_k=args.top_k)
    grids = {}
    steps = [f"train.steps={args.steps or load(args.config, 'stage1').train.steps}"]
    steps2 = args.stage2_steps or load(args.config, "joint").train.steps
    for name, overrides in VARIANTS.items():
        work = out / "stage1" if name == "(iii) cascade" else out / _slug(name)
        print(f"[{time.time() - t0:6.0f} s] {name}: training -> {work}", file=sys.stderr)
        train_stage(args.config, "stage1", work, data, [*steps, *overrides])
        name_dir = "stage1" if name == "(iii) cascade" else _slug(name)
        grids[name] = grid(name_dir, [adapter_folder(work, STAGE1)], **kw)
    stage1 = adapter_folder(out / "stage1", STAGE1)
    print(f"[{time.time() - t0:6.0f} s] (iv): compensation", file=sys.stderr)
    s2 = train_stage(args.config, "joint", out / "stage2", data, [
        f"train.steps={steps2}", f"model.init_adapters=({str(stage1)!r},)"])
    grids["(iv) cascade + comp"] = grid("compensated", [stage1, *s2["adapters"]], **kw)
    table = write_report(out, "ablation", grids, {
        "steps": steps[0].split("=")[1], "stage2_steps": steps2,
        "max_queries": args.max_queries, "top_k": args.top_k,
        "variants": {k: v for k, v in VARIANTS.items()}})
    print(table)
    print(f"written: {out}/ablation.{{md,json,png}} ({time.time() - t0:.0f} s)")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


if __name__ == "__main__":
    raise SystemExit(main())
