"""Which change makes SmolLM2 learn to rank: one training lever at a time, at one budget.

    python -m mrr_jax.levers --out out/levers [--steps 100] [--levers base,no-teacher,...]
                             [--config configs/smollm2_135m_long.py] [--top-k 10]

Every lever is the ``base`` recipe (``configs/smollm2_135m_long.py``, stage 1: BM25 scores as
the external teacher, groups of 8, 2 queries a step, lr 5e-4) with one thing changed
(:data:`LEVERS`), trained for ``--steps`` optimizer steps from the same seed and data order
into ``OUT/<lever>``. Each trained model, the zero-shot model (both head initialisations) and
BM25 are then scored on the **dev** split of the example set (never test): BM25's top
``--top-k`` of every dev query, the text cut at the config's training lengths, under ``full``
and a plan at under half its FLOPs. The table gives MRR@10 and nDCG@10 per plan and, for
each lever, the paired-bootstrap 95% interval of its MRR@10 change against ``base`` over the
same queries (``data.metrics.paired_bootstrap``). Writes ``OUT/levers.{md,json}``.

Resumable: a finished lever (``OUT/<lever>/summary.json`` of the same steps) and its dev
scores (``OUT/<lever>/dev_grid.json``) are reused; an unfinished one resumes from its last
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrr_jax.experiments.demo import model_of, run_once

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "smollm2_135m_long.py"
PLANS = ("full", "depth=20 compress=4:2,12:2")
# lever: (what it changes, config overrides). "steps-x2" doubles --steps.
LEVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "base": ("BM25 teacher, groups of 8 x 2 queries, lr 5e-4, heads = 'Yes' row", ()),
    "no-teacher": ("without the BM25 teacher scores (CE + self-distillation only)",
                   ("data.train='example:train'",)),
    "yes-no-heads": ("heads start from 'Yes' - 'No' (log-odds)", ("model.no_token='No'",)),
    "head-lr-x10": ("exit heads learn 10x faster", ("optim.head_lr_scale=10.0",)),
    "lr-1e-3": ("lr 1e-3 instead of 5e-4", ("optim.lr=0.001",)),
    "lr-2e-3": ("lr 2e-3 instead of 5e-4", ("optim.lr=0.002",)),
    "no-teacher-lr-2e-3": ("no-teacher and lr-2e-3 together (a recipe, not one lever)",
                           ("data.train='example:train'", "optim.lr=0.002")),
    "group-4x4": ("groups of 4 x 4 queries (same rows a step)",
                  ("data.group_size=4", "data.queries_per_step=4")),
    "steps-x2": ("twice the steps", ()),
}


def lever_overrides(name: str, steps: int) -> list[str]:
    """Config overrides of lever ``name`` at a budget of ``steps`` optimizer steps."""
    if name not in LEVERS:
        raise ValueError(f"unknown lever {name!r}; expected one of {', '.join(LEVERS)}")
    n = 2 * steps if name == "steps-x2" else steps
    return [*LEVERS[name][1], f"train.steps={n}", "train.eval_every=0", "eval.plans=()"]


def lever_config(config: str | Path, name: str, steps: int):
    """The stage-1 config of lever ``name`` at ``steps`` steps."""
    from mrr_jax.runtime.pyconfig import load_config

    return load_config(f"{config}:stage1", lever_overrides(name, steps))


def train_lever(config: str | Path, name: str, steps: int, out: Path) -> dict[str, Any]:
    """Trains (or resumes, or reuses) lever ``name``; returns its summary (with
    ``train_minutes``)."""
    return run_once(lever_config(config, name, steps), out / name)


def dev_grid(c, adapters: Sequence[Path], cache: Path, top_k: int) -> list[dict[str, Any]]:
    """Grid rows (with per-query values) of config ``c``'s model (its heads) + ``adapters``
    on the example dev split: BM25's top ``top_k`` per query, the text cut as in training,
    :data:`PLANS` (those within the model's depth)."""
    from mrr_jax.evaluation.grid import plan_grid
    from mrr_jax.training.data import data_paths

    if cache.is_file():
        return json.loads(cache.read_text())["rows"]
    data = data_paths("example:dev")[0].parent
    rr = model_of(c, adapters)
    rows = plan_grid(rr, data, "dev", data / "bm25" / "dev.trec", plans_for(rr.cfg.num_layers),
                     top_k=top_k, max_length=c.data.query_max_len + c.data.passage_max_len,
                     query_max_length=c.data.query_max_len, progress=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"rows": rows}) + "\n")
    return rows


def plans_for(num_layers: int) -> tuple[str, ...]:
    """:data:`PLANS` for a model of ``num_layers`` layers (a small test model: ``full`` and
    a cut at half depth)."""
    return PLANS if num_layers >= 30 else ("full", f"depth={num_layers // 2 + 1}")


def per_query(rows: list[dict[str, Any]], plan: str, metric: str = "RR@10") -> list[float]:
    """One plan's per-query values, in qid order."""
    row = next(r for r in rows if r["plan"] == plan)
    return [row["per_query"][q][metric] for q in sorted(row["per_query"])]


def bm25_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return next(iter(results.values()))["rows"]


def table(results: dict[str, dict[str, Any]], bm25: dict[str, Any]) -> str:
    """Markdown: one row per model; MRR@10 / nDCG@10 per plan, MRR@10 change vs base."""
    from mrr_jax.data.metrics import paired_bootstrap

    plans = [r["plan"] for r in bm25_rows(results) if not r.get("baseline")]
    head = ["model", "what changed", "minutes"]
    for p in plans:
        head += [f"`{p}` MRR@10 / nDCG@10", f"`{p}` MRR@10 vs base [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get("base")
    for name, r in results.items():
        cells = [name, r["what"], f"{r['minutes']:.0f}" if r.get("minutes") else "-"]
        for p in plans:
            m = next(x for x in r["rows"] if x["plan"] == p)["metrics"]
            cells.append(f"{m['RR@10']:.3f} / {m['nDCG@10']:.3f}")
            if base is None or name == "base":
                cells.append("-")
            else:
                d = paired_bootstrap(per_query(base["rows"], p), per_query(r["rows"], p))
                cells.append(f"{d['change']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    m = bm25["metrics"]
    lines.append("| BM25 | first stage | - | " + " | ".join(
        [f"{m['RR@10']:.3f} / {m['nDCG@10']:.3f}", "-"] * len(plans)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from mrr_jax.training.state import adapter_folder
    from mrr_jax.weights.adapters import AdapterRole

    p = argparse.ArgumentParser(prog="python -m mrr_jax.levers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/levers"))
    p.add_argument("--config", default=str(CONFIG), help="the base recipe's config")
    p.add_argument("--steps", type=int, default=100, help="the budget: optimizer steps")
    p.add_argument("--levers", default=",".join(LEVERS), help="comma-separated, in order")
    p.add_argument("--top-k", type=int, default=10, help="BM25 candidates per dev query")
    args = p.parse_args(argv)
    names = [n for n in args.levers.split(",") if n]
    for n in names:
        lever_overrides(n, args.steps)  # unknown levers fail before any training
    t0 = time.time()
    say = lambda msg: print(f"[{time.time() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, dict[str, Any]] = {}
    for label, no_token in (("zero-shot", ""), ("zero-shot, yes-no heads", "No")):
        say(f"{label}: dev grid")
        c = lever_config(args.config, "base", args.steps)
        c.model.no_token = no_token
        rows = dev_grid(c, [], args.out / "zero-shot" / (
            "dev_grid_no.json" if no_token else "dev_grid.json"), args.top_k)
        results[label] = {"what": "untrained", "rows": rows}
    for n in names:
        say(f"lever {n}: {LEVERS[n][0]}: training")
        s = train_lever(args.config, n, args.steps, args.out)
        say(f"lever {n}: dev grid")
        rows = dev_grid(lever_config(args.config, n, args.steps),
                        [adapter_folder(args.out / n, AdapterRole("stage1"))],
                        args.out / n / "dev_grid.json", args.top_k)
        results[n] = {"what": LEVERS[n][0], "rows": rows, "minutes": s.get("train_minutes"),
                      "steps": s.get("steps")}
        bm25 = next(r for r in rows if r.get("baseline"))
        text = table(results, bm25)
        (args.out / "levers.md").write_text(
            f"dev split, BM25 top {args.top_k}, {bm25['queries']} queries; budget "
            f"{args.steps} steps\n\n" + text)
        (args.out / "levers.json").write_text(json.dumps(
            {"steps": args.steps, "top_k": args.top_k,
             "results": {k: {**v, "rows": [{x: y for x, y in r.items() if x != "per_query"}
                                           for r in v["rows"]]} for k, v in results.items()}},
            indent=1) + "\n")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
