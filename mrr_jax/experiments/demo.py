"""``make demo``: train a Matryoshka re-ranker on real text, cut it to six shapes, and show
with intervals what training bought at each.

    python -m mrr_jax.demo [--out out/demo] [--config configs/smollm2_135m_demo.py]
                           [--steps N] [--stage2-steps N] [--max-queries N] [--top-k 10]

1. Builds the stdlib-docstring example dataset (``mrr_jax.data.example``) into ``OUT/data``.
2. Re-ranks BM25's top-k of the test split with zero-shot SmolLM2-135M-Instruct (the config's
   exit heads, untrained) under the config's ``eval.plans`` (the demo config: six plans,
   depth cuts, width cuts and both).
3. Stage 1 (``CONFIG:stage1``): cascaded self-distillation over sampled sub-models, with the
   config's teacher -> ``OUT/stage1/adapters/stage1``; the same grid with that adapter.
4. Stage 2 (``CONFIG:joint``): vertical + horizontal compensation LoRA (the config's ratios,
   trained jointly) on top of the folded stage-1 adapter -> ``OUT/stage2/adapters/...``; the
   grid again, each plan with stage 1 + V + H(its ratio).
5. One table: per plan, predicted FLOPs relative to the full model, MRR@10 and nDCG@10 of
   each model, and each trained model's MRR@10 change against zero-shot with its
   paired-bootstrap 95% interval over the test queries (``data.metrics.paired_bootstrap``);
   BM25 last, and the full plan's change against BM25. Writes ``OUT/demo.{md,json,png}``;
   each grid's own files (with per-query values) are under ``OUT/grids/<model>/``.

Every stage is resumable: run the command again and finished stages are reused (training
resumes from its last checkpoint). Training rows named ``example:<name>`` in the config are
read from ``OUT/data``. Scoring cuts queries and passages at the config's training lengths,
so the zero-shot and trained rows see the same text as training did.
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
CONFIG = ROOT / "configs" / "smollm2_135m_demo.py"
METRICS = ("RR@10", "nDCG@10")


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


def local_rows(spec: str, data: Path) -> str:
    """``data.train`` with every ``example:<name>`` read from ``data/<name>.jsonl``."""
    return ",".join(str(data / f"{p.split(':', 1)[1]}.jsonl") if p.startswith("example:")
                    else p for p in spec.split(",") if p)


def train_stage(config: str | Path, arg: str, workdir: Path, data: Path,
                overrides: Sequence[str] = ()) -> dict:
    """Runs (or resumes, or reuses) one training run of ``config`` with stage ``arg``;
    returns its summary."""
    c = load(config, arg, ["eval.plans=()", *overrides])
    c.data.train = local_rows(c.data.train, data)
    return run_once(c, workdir)


def run_once(c, workdir: Path) -> dict:
    """Trains config ``c`` in ``workdir`` (resuming from its last checkpoint), or returns the
    summary of a run there that already finished at ``c``'s steps. A run made here records
    its wall time in its summary (``train_minutes``, this call's part of it)."""
    from mrr_jax.data.fileio import atomic_write_bytes
    from mrr_jax.training import loop as train

    done = workdir / "summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
        if summary.get("steps") == c.train.steps or not c.train.steps:
            return summary
    t0 = time.time()
    summary = train.run(c, workdir)
    summary["train_minutes"] = round((time.time() - t0) / 60, 1)
    atomic_write_bytes(done, (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def model_of(c, adapters: Sequence[str | Path]):
    """Config ``c``'s base model (its heads), on the device, with the saved ``adapters``."""
    from mrr_jax.inference.adapters import PlanAdapter
    from mrr_jax.training import loop as train

    rr = train.load_model(c).place()
    return rr.with_adapters([PlanAdapter.load(a, rr.cfg, rr.start_layer) for a in adapters])


def grid(name: str, adapters: Sequence[str | Path], data: Path, out: Path, config: str | Path,
         plans: Sequence[str], max_queries: int | None, top_k: int, batch_size: int = 16
         ) -> list[dict[str, Any]]:
    """The plan grid of the config's base model + ``adapters`` on the test split (cached in
    out/grids/name, rows with per-query values)."""
    from mrr_jax.evaluation.grid import plan_grid

    folder = out / "grids" / name
    cached = folder / "grid.json"
    if cached.is_file():
        saved = json.loads(cached.read_text())
        rows = saved["rows"]
        if [r["plan"] for r in rows if not r.get("baseline")] == list(plans) and \
                saved.get("demo") == {"max_queries": max_queries, "top_k": top_k}:
            return rows
    c = load(config, "stage1")
    rows = plan_grid(model_of(c, adapters), data, "test", data / "bm25" / "test.trec", plans,
                     top_k=top_k,
                     max_queries=max_queries, out=folder, batch_size=batch_size,
                     max_length=c.data.query_max_len + c.data.passage_max_len,
                     query_max_length=c.data.query_max_len, progress=True, share_passes=True)
    cached.write_text(json.dumps({"rows": rows, "demo": {"max_queries": max_queries,
                                                         "top_k": top_k}}) + "\n")
    return rows


def _values(row: dict[str, Any], metric: str = "RR@10") -> list[float]:
    return [row["per_query"][q][metric] for q in sorted(row["per_query"])]


def combine(grids: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per plan (BM25 last): rel FLOPs, per model MRR@10 / nDCG@10 / seconds, and
    per model after the first its paired MRR@10 change against the first (``vs_first``) and,
    on the full plan, against BM25 (``vs_baseline``)."""
    from mrr_jax.data.metrics import paired_bootstrap

    names = list(grids)
    first = grids[names[0]]
    base = next(r for r in first if r.get("baseline"))
    rows = []
    for i, r in enumerate(first):
        row = {"plan": r["plan"], "baseline": bool(r.get("baseline")),
               "flops_rel": r.get("flops_rel", 0.0), "queries": r.get("queries"),
               "models": {}}
        for n in names:
            g = grids[n][i]
            m = {k: g["metrics"][k] for k in METRICS}
            m["seconds"] = g.get("seconds")
            if n != names[0] and not row["baseline"] and "per_query" in g:
                m["vs_first"] = paired_bootstrap(_values(first[i]), _values(g))
                m["vs_baseline"] = paired_bootstrap(_values(base), _values(g))
            row["models"][n] = m
        rows.append(row)
    return rows


def _change(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    lo, hi = d["ci95"]
    return f"{d['change']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def format_table(rows: list[dict[str, Any]], names: Sequence[str]) -> str:
    """Markdown: plan | FLOPs | per model MRR@10 / nDCG@10 | per trained model the MRR@10
    change against the first model [95% CI]. A line below gives the queries and, for the
    full plan, each trained model's MRR@10 change against BM25."""
    head = ["plan", "FLOPs"] + [f"{n} MRR@10 / nDCG@10" for n in names] + \
        [f"{n}: MRR@10 vs {names[0]} [95% CI]" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ms = r["models"]
        if r["baseline"]:
            m = ms[names[0]]
            cells = [r["plan"], "-", f"{m['RR@10']:.3f} / {m['nDCG@10']:.3f}"] + \
                ["(same)"] * (len(names) - 1) + ["-"] * (len(names) - 1)
        else:
            cells = [r["plan"], f"{r['flops_rel']:.2f}"] + [
                f"{ms[n]['RR@10']:.3f} / {ms[n]['nDCG@10']:.3f}" for n in names] + [
                _change(ms[n].get("vs_first")) for n in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    full = rows[0]
    lines.append("")
    lines.append(f"{full['queries']} test queries. Full plan ({full['plan']}) against "
                 f"{rows[-1]['plan']}, MRR@10 change [95% CI]: " + "; ".join(
                     f"{n} {_change(full['models'][n].get('vs_baseline'))}"
                     for n in names[1:]) + ".")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], names: Sequence[str], path: Path,
         title: str = "SmolLM2-135M Matryoshka re-ranker, example test split") -> None:
    """MRR@10 against relative FLOPs, one series per model, BM25 as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = sorted((r["flops_rel"], r["models"][n]["RR@10"]) for r in rows
                     if not r["baseline"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=n)
    for r in rows:
        if r["baseline"]:
            ax.axhline(r["models"][names[0]]["RR@10"], color="gray", ls="--",
                       label=r["plan"])
        else:
            ax.annotate(r["plan"], (r["flops_rel"], r["models"][names[-1]]["RR@10"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("predicted FLOPs relative to the full model")
    ax.set_ylabel("MRR@10")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, stem: str, grids: dict[str, list[dict[str, Any]]],
                 extra: dict[str, Any], title: str | None = None) -> str:
    """Writes OUT/<stem>.{json,md,png} (``title``: the plot's); returns the markdown table."""
    from mrr_jax.data.fileio import atomic_write_bytes

    names = list(grids)
    rows = combine(grids)
    table = format_table(rows, names)
    atomic_write_bytes(out / f"{stem}.md", table.encode())
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(
        {"rows": rows, **extra}, indent=2) + "\n").encode())
    plot(rows, names, out / f"{stem}.png", *([title] if title else []))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from mrr_jax.training.state import adapter_folder
    from mrr_jax.weights.adapters import AdapterRole

    p = argparse.ArgumentParser(prog="python -m mrr_jax.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--config", default=str(CONFIG), help="training config (default "
                   "configs/smollm2_135m_demo.py; configs/tiny.py for a quick plumbing run); "
                   "its eval.plans are the grid")
    p.add_argument("--steps", type=int, help="stage-1 optimizer steps (default: the "
                   "config's train.steps)")
    p.add_argument("--stage2-steps", type=int, help="stage-2 optimizer steps (default: the "
                   "config's, for its joint stage)")
    p.add_argument("--max-queries", type=int, help="test queries re-ranked, the first N in "
                   "qid order (default: all 177 with a relevant passage)")
    p.add_argument("--top-k", type=int, default=10, help="BM25 candidates per query "
                   "(default %(default)s)")
    args = p.parse_args(argv)

    t0 = time.time()
    out = args.out
    say = lambda msg: print(f"[{time.time() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"1/5 example dataset -> {out / 'data'}")
    data = ensure_data(out)
    c1 = load(args.config, "stage1")
    steps = args.steps or c1.train.steps
    steps2 = args.stage2_steps or load(args.config, "joint").train.steps
    plans = tuple(c1.eval.plans)
    kw = dict(data=data, out=out, config=args.config, plans=plans,
              max_queries=args.max_queries, top_k=args.top_k)
    say("2/5 zero-shot grid")
    grids = {"zero-shot": grid("zero-shot", [], **kw)}
    say(f"3/5 stage 1: cascaded self-distillation, {steps} steps -> {out / 'stage1'}")
    s1 = train_stage(args.config, "stage1", out / "stage1", data, [f"train.steps={steps}"])
    stage1 = adapter_folder(out / "stage1", AdapterRole("stage1"))
    grids["stage 1"] = grid("stage1", [stage1], **kw)
    say(f"4/5 stage 2: joint V + H compensation, {steps2} steps -> {out / 'stage2'}")
    s2 = train_stage(args.config, "joint", out / "stage2", data, [
        f"train.steps={steps2}", f"model.init_adapters=({str(stage1)!r},)"])
    comp = s2["adapters"]
    grids["stage 1 + compensation"] = grid("compensated", [stage1, *comp], **kw)
    say("5/5 report")
    table = write_report(out, "demo", grids, {
        "config": str(args.config), "steps": {"stage1": s1.get("steps"),
                                              "stage2": s2.get("steps")},
        "max_queries": args.max_queries, "top_k": args.top_k,
        "seconds": round(time.time() - t0, 1)})
    print(table)
    print(f"written: {out}/demo.{{md,json,png}}, {out}/grids/, {out}/stage1, {out}/stage2 "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
