"""``make demo``: train a Matryoshka re-ranker on real text and cut it to six shapes.

    python -m mrr_jax.demo [--out out/demo] [--steps 40] [--stage2-steps 20]
                           [--max-queries 10] [--top-k 20]

1. Builds the stdlib-docstring example dataset (``mrr_jax.data.example``) into ``OUT/data``.
2. Re-ranks BM25's top-k of the test split with zero-shot SmolLM2-135M-Instruct (exit heads =
   the "Yes" row) under six plans: full, two depth cuts, a width cut, two depth+width cuts.
3. Stage 1 (``configs/smollm2_135m.py``): cascaded self-distillation over sampled sub-models
   -> ``OUT/stage1/adapters/stage1``; the same grid with that adapter.
4. Stage 2 (``configs/smollm2_135m.py:joint``): vertical + horizontal compensation LoRA (ratios
   2 and 4, trained jointly) on top of the folded stage-1 adapter ->
   ``OUT/stage2/adapters/{vertical,h2,h4}``; the grid again, each plan with stage 1 + V +
   H(its ratio).
5. Prints one table (nDCG@10 and MRR@10 per plan and model, predicted FLOPs relative to the
   full model, measured seconds) and writes ``OUT/demo.{md,json,png}``; each grid's own
   files are under ``OUT/grids/<model>/``.

Every stage is resumable: run the command again and finished stages are reused (training
resumes from its last checkpoint). Scoring cuts queries and passages at the config's training
lengths, so the zero-shot and trained rows see the same text as training did.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the folder holding configs/
CONFIG = ROOT / "configs" / "smollm2_135m.py"


def ensure_data(out: Path) -> Path:
    """The example dataset under ``out/data`` (built once)."""
    from mrr_jax.data import example

    data = out / "data"
    if not (data / "stats.json").is_file():
        example.main([str(data)])
    return data


def load(config: str | Path, arg: str, overrides: Sequence[str] = ()):
    """The training config ``config:arg`` with overrides."""
    from mrr_jax.runtime.pyconfig import load_config

    return load_config(f"{config}:{arg}", overrides)


def train_stage(config: str | Path, arg: str, workdir: Path, data: Path,
                overrides: Sequence[str] = ()) -> dict:
    """Runs (or resumes, or reuses) one training run of ``config`` with stage ``arg``;
    returns its summary."""
    from mrr_jax.training import loop as train

    done = workdir / "summary.json"
    c = load(config, arg, [
        f"data.train={str(data / 'train.jsonl')!r}", "eval.plans=()", *overrides])
    if done.is_file():
        summary = json.loads(done.read_text())
        if summary.get("steps") == c.train.steps or not c.train.steps:
            return summary
    return train.run(c, workdir)


def grid(name: str, adapters: Sequence[str | Path], data: Path, out: Path, config: str | Path,
         plans: Sequence[str], max_queries: int, top_k: int, batch_size: int = 16
         ) -> list[dict[str, Any]]:
    """The plan grid of the config's base model + ``adapters`` on the test split (cached in
    out/grids/name)."""
    from mrr_jax.evaluation.grid import plan_grid
    from mrr_jax.inference.adapters import PlanAdapter
    from mrr_jax.training import loop as train

    folder = out / "grids" / name
    cached = folder / "grid.json"
    if cached.is_file():
        rows = json.loads(cached.read_text())["rows"]
        if [r["plan"] for r in rows if not r.get("baseline")] == list(plans) and \
                rows[0].get("queries") == max_queries:
            return rows
    c = load(config, "stage1")
    rr = train.load_model(c).place()
    rr = rr.with_adapters([PlanAdapter.load(a, rr.cfg, rr.start_layer) for a in adapters])
    return plan_grid(rr, data, "test", data / "bm25" / "test.trec", plans, top_k=top_k,
                     max_queries=max_queries, out=folder, batch_size=batch_size,
                     max_length=c.data.query_max_len + c.data.passage_max_len,
                     query_max_length=c.data.query_max_len, progress=True)


def combine(grids: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per plan: rel FLOPs and, per model, nDCG@10 / RR@10 / seconds; BM25 last."""
    names = list(grids)
    first = grids[names[0]]
    rows = []
    for i, r in enumerate(first):
        row = {"plan": r["plan"], "baseline": bool(r.get("baseline")),
               "flops_rel": r.get("flops_rel", 0.0), "models": {}}
        for n in names:
            g = grids[n][i]
            row["models"][n] = {"nDCG@10": g["metrics"]["nDCG@10"],
                                "RR@10": g["metrics"]["RR@10"], "seconds": g.get("seconds")}
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], names: Sequence[str]) -> str:
    """Markdown: plan | rel FLOPs | per model nDCG@10 / MRR@10 | seconds of the last model."""
    head = ["plan", "FLOPs"] + [f"{n} nDCG@10 / MRR@10" for n in names] + \
        [f"s ({names[0]})", f"s ({names[-1]})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["baseline"]:
            m = r["models"][names[0]]
            cells = [r["plan"], "-", f"{m['nDCG@10']:.3f} / {m['RR@10']:.3f}"] + \
                ["(same)"] * (len(names) - 1) + ["-", "-"]
        else:
            cells = [r["plan"], f"{r['flops_rel']:.2f}"] + [
                f"{r['models'][n]['nDCG@10']:.3f} / {r['models'][n]['RR@10']:.3f}"
                for n in names] + [f"{r['models'][names[0]]['seconds']:.1f}",
                                   f"{r['models'][names[-1]]['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], names: Sequence[str], path: Path,
         title: str = "SmolLM2-135M Matryoshka re-ranker, example test split") -> None:
    """nDCG@10 against relative FLOPs, one series per model, BM25 as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = sorted((r["flops_rel"], r["models"][n]["nDCG@10"]) for r in rows
                     if not r["baseline"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=n)
    for r in rows:
        if r["baseline"]:
            ax.axhline(r["models"][names[0]]["nDCG@10"], color="gray", ls="--",
                       label=r["plan"])
        else:
            ax.annotate(r["plan"], (r["flops_rel"], r["models"][names[-1]]["nDCG@10"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("predicted FLOPs relative to the full model")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, stem: str, grids: dict[str, list[dict[str, Any]]],
                 extra: dict[str, Any]) -> str:
    """Writes OUT/<stem>.{json,md,png}; returns the markdown table."""
    from mrr_jax.data.fileio import atomic_write_bytes

    names = list(grids)
    rows = combine(grids)
    table = format_table(rows, names)
    atomic_write_bytes(out / f"{stem}.md", table.encode())
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(
        {"rows": rows, **extra}, indent=2) + "\n").encode())
    plot(rows, names, out / f"{stem}.png")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from mrr_jax.training.state import adapter_folder
    from mrr_jax.weights.adapters import AdapterRole

    p = argparse.ArgumentParser(prog="python -m mrr_jax.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--config", default=str(CONFIG), help="training config (default "
                   "configs/smollm2_135m.py; configs/tiny.py for a quick plumbing run); "
                   "its eval.plans are the grid")
    p.add_argument("--steps", type=int, default=40, help="stage-1 optimizer steps")
    p.add_argument("--stage2-steps", type=int, default=20, help="stage-2 optimizer steps")
    p.add_argument("--max-queries", type=int, default=10, help="test queries re-ranked "
                   "(the split has 177)")
    p.add_argument("--top-k", type=int, default=20, help="BM25 candidates per query")
    args = p.parse_args(argv)

    t0 = time.time()
    out = args.out
    say = lambda msg: print(f"[{time.time() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"1/5 example dataset -> {out / 'data'}")
    data = ensure_data(out)
    plans = tuple(load(args.config, "stage1").eval.plans)
    kw = dict(data=data, out=out, config=args.config, plans=plans,
              max_queries=args.max_queries, top_k=args.top_k)
    say("2/5 zero-shot grid")
    grids = {"zero-shot": grid("zero-shot", [], **kw)}
    say(f"3/5 stage 1: cascaded self-distillation, {args.steps} steps -> {out / 'stage1'}")
    s1 = train_stage(args.config, "stage1", out / "stage1", data,
                     [f"train.steps={args.steps}"])
    stage1 = adapter_folder(out / "stage1", AdapterRole("stage1"))
    grids["stage 1"] = grid("stage1", [stage1], **kw)
    say(f"4/5 stage 2: joint V + H(2, 4) compensation, {args.stage2_steps} steps -> "
        f"{out / 'stage2'}")
    s2 = train_stage(args.config, "joint", out / "stage2", data, [
        f"train.steps={args.stage2_steps}", f"model.init_adapters=({str(stage1)!r},)"])
    comp = s2["adapters"]
    grids["stage 1 + compensation"] = grid("compensated", [stage1, *comp], **kw)
    say("5/5 report")
    table = write_report(out, "demo", grids, {
        "steps": {"stage1": s1.get("steps"), "stage2": s2.get("steps")},
        "max_queries": args.max_queries, "top_k": args.top_k,
        "seconds": round(time.time() - t0, 1)})
    print(table)
    print(f"written: {out}/demo.{{md,json,png}}, {out}/grids/, {out}/stage1, {out}/stage2 "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
