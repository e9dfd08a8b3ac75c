"""The benchmark's report: memory, environment, derived columns and the Markdown table."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import resource
from pathlib import Path

import numpy as np


def maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def own_peak_mib() -> float:
    """This process's own peak RSS in MiB: ``VmHWM`` where /proc has it. (A child's
    ``ru_maxrss`` starts from its parent's at exec on Linux, so it overstates a subprocess.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return maxrss_mib()


def environment(args: argparse.Namespace) -> dict:
    """Versions, cores and settings of this run (and its start time)."""
    import jax
    import torch
    import transformers

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python -m mrr_jax.bench", *args.argv]),
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor(), "cores": available_cores(),
            "jax": jax.__version__, "jax_backend": jax.default_backend(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "transformers": transformers.__version__,
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "model": str(args.model),
            "dtype": args.dtype, "pairs": args.pairs, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "repeats": args.repeats}


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fmt(x: float | None, digits: int = 2) -> str:
    """A number for the table, or an em dash for none."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def plan_rows(results: dict) -> list[dict]:
    """Adds the derived columns (ratios, speed-ups, realised saving) to each plan's row."""
    rows = results["plans"]
    full = rows[0]
    eager = results["torch"].get("eager", {}).get("pairs_per_s")
    sdpa = results["torch"].get("sdpa", {}).get("pairs_per_s")
    compile_ = results.get("compile", {})
    for row in rows:
        pred = full["flops_per_pair"] / row["flops_per_pair"]
        meas = row["pairs_per_s"] / full["pairs_per_s"]
        row["predicted_speedup"] = pred
        row["measured_speedup"] = meas
        row["measured_over_predicted"] = meas / pred
        row["saving_realised"] = (meas - 1) / (pred - 1) if abs(pred - 1) > 1e-9 else None
        row["vs_torch_eager"] = row["pairs_per_s"] / eager if eager else None
        row["vs_torch_sdpa"] = row["pairs_per_s"] / sdpa if sdpa else None
        for kind in ("cold", "warm"):
            probe = compile_.get(kind, {}).get("plans", {}).get(row["plan_arg"])
            row[f"compile_s_{kind}"] = probe["compile_s"] if probe else None
    return rows


def markdown(results: dict) -> str:
    """The report: one table row per plan, then PyTorch, parity, memory and environment."""
    env = results["env"]
    lines = [
        f"Model `{Path(env['model']).name}`, {env['pairs']} pairs × "
        f"{env['seq_len']} tokens, batch {env['batch_size']}, {env['dtype']}, "
        f"{env['cores']} cores, best of {env['repeats']}.",
        "",
        "| plan | pairs/s | × PyTorch eager | × PyTorch sdpa | predicted FLOPs speed-up | "
        "measured speed-up | saving realised % | measured/predicted | compile s cold | "
        "compile s warm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["plans"]:
        realised = None if r["saving_realised"] is None else 100 * r["saving_realised"]
        lines.append(
            f"| `{r['plan']}` | {fmt(r['pairs_per_s'])} | {fmt(r['vs_torch_eager'])} | "
            f"{fmt(r['vs_torch_sdpa'])} | {fmt(r['predicted_speedup'])} | "
            f"{fmt(r['measured_speedup'])} | {fmt(realised, 0)} | "
            f"{fmt(r['measured_over_predicted'])} | {fmt(r['compile_s_cold'], 1)} | "
            f"{fmt(r['compile_s_warm'], 1)} |")
    lines.append("")
    for attn, t in results["torch"].items():
        lines.append(f"- PyTorch {attn} (full model): {fmt(t['pairs_per_s'])} pairs/s; "
                     f"max |score − mrr_jax `{results['plans'][0]['plan_arg']}`| = "
                     f"{t['max_abs_diff']:.2e}")
    p, mem = results["plans"][0], results["memory"]
    child = (f"; compile-check subprocess {fmt(mem['children_mib'], 0)} MiB (its own VmHWM)"
             if "children_mib" in mem else "")
    q, pas, r = results["segments"]
    lines += [
        f"- segments per pair: query {q}, passage {pas}, prompt {r} tokens; mrr_jax's padded "
        f"token slots / real tokens = {fmt(results['padding_overhead'], 3)} (region buckets)",
        f"- mrr_jax `{p['plan_arg']}` first call (compile + one batch per shape): "
        f"{fmt(p['first_call_s'], 1)} s",
        f"- peak RSS (ru_maxrss): {fmt(mem['after_jax_mib'], 0)} MiB after mrr_jax, "
        f"{fmt(mem['after_torch_mib'], 0)} MiB with the PyTorch models too{child}",
        f"- load average (1 min) at start / each round / end: {fmt(env['loadavg_start'])} / "
        f"{', '.join(fmt(x) for x in results['loadavg_rounds'])} / {fmt(env['loadavg_end'])}",
        f"- jax {env['jax']} ({env['jax_backend']}), torch {env['torch']} "
        f"({env['torch_threads']} threads), transformers {env['transformers']}, "
        f"Python {env['python']}, XLA_FLAGS={env['XLA_FLAGS']!r}",
    ]
    if results.get("parity_failed"):
        lines.append(f"- **PARITY FAILURE**: {results['parity_failed']}")
    return "\n".join(lines)


def to_jsonable(obj):
    """numpy arrays and scalars -> lists and floats, recursively."""
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
