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

from mrr_jax.runtime.chips import achieved_tflops, mfu


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
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "model": str(args.model),
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
    peak = results.get("env", {}).get("peak_tflops")
    for t in results["torch"].values():  # the PyTorch peers run the full model
        t["flops_per_pair"] = results["full_flops_per_pair"]
    for row in [*rows, *results["torch"].values()]:
        row["tflops"] = achieved_tflops(row["pairs_per_s"], row["flops_per_pair"])
        row["mfu"] = mfu(row["pairs_per_s"], row["flops_per_pair"], peak)
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


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage for the table, or an em dash."""
    return fmt(None if x is None else 100 * x, digits)


def header(results: dict) -> list[str]:
    """The report's first lines: what ran, where, and the peak MFU is measured against."""
    env = results["env"]
    torch_at = (f"PyTorch on {env.get('torch_device_name') or env.get('torch_device')} "
                f"({env.get('torch_dtype')})" if env.get("torch_device")
                else env.get("torch_note") or "no PyTorch peer")
    peak = (f"MFU against {fmt(env['peak_tflops'], 0)} TFLOP/s ({env['peak_source']})"
            if env.get("peak_tflops") else f"no MFU: {env.get('peak_source', 'no peak known')}")
    lines = [
        f"Model `{Path(env['model']).name}` ({fmt(results.get('model_params', 0) / 1e9, 2)} B "
        f"params), {env['pairs']} pairs × {env['seq_len']} tokens, batch "
        f"{env['batch_size']}, {env['dtype']}, best of {env['repeats']}; jax on "
        f"{env.get('device_kind', '?')} ({env['jax_backend']}, {env['cores']} host cores), "
        f"{torch_at}; {peak}.",
    ]
    rnd = env.get("random_model")
    if rnd:
        lines.append(f"Random weights (N(0, {rnd['std']})) in the shape of `{rnd['shape_of']}`"
                     + (f"; {rnd['note']}" if rnd.get("note") else "") + ".")
    return lines + [""]


def table(results: dict) -> list[str]:
    """One row per plan; the MFU column only when a peak is known."""
    show_mfu = bool(results["env"].get("peak_tflops"))
    cols = ["plan", "pairs/s", "× PyTorch eager", "× PyTorch sdpa", "TFLOP/s",
            *(["MFU %"] if show_mfu else []), "predicted FLOPs speed-up", "measured speed-up",
            "saving realised %", "measured/predicted", "compile s (first call − steady)",
            "compile s cold", "compile s warm"]
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for r in results["plans"]:
        realised = None if r["saving_realised"] is None else 100 * r["saving_realised"]
        cells = [f"`{r['plan']}`", fmt(r["pairs_per_s"]), fmt(r["vs_torch_eager"]),
                 fmt(r["vs_torch_sdpa"]), fmt(r["tflops"], 3),
                 *([pct(r["mfu"])] if show_mfu else []), fmt(r["predicted_speedup"]),
                 fmt(r["measured_speedup"]), fmt(realised, 0), fmt(r["measured_over_predicted"]),
                 fmt(r["compile_est_s"], 1), fmt(r["compile_s_cold"], 1),
                 fmt(r["compile_s_warm"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(results: dict) -> str:
    """The report: one table row per plan, then PyTorch, parity, load times, memory and
    environment."""
    env = results["env"]
    lines = header(results) + table(results)
    show_mfu = bool(env.get("peak_tflops"))
    base = results["plans"][0]
    for attn, t in results["torch"].items():
        lines.append(f"- PyTorch {attn} (full model): {fmt(t['pairs_per_s'])} pairs/s, "
                     f"{fmt(t['tflops'], 3)} TFLOP/s"
                     + (f", MFU {pct(t['mfu'])} %" if show_mfu else "")
                     + f"; load {fmt(t['load_s'], 1)} s, first call {fmt(t['first_call_s'], 2)} s"
                     f"; max |score − mrr_jax `{base['plan_arg']}`| = {t['max_abs_diff']:.2e}")
    for attn, why in results.get("torch_skipped", {}).items():
        lines.append(f"- PyTorch {attn}: skipped ({why})")
    mem = results["memory"]
    child = (f"; compile-check subprocess {fmt(mem['children_mib'], 0)} MiB (its own VmHWM)"
             if "children_mib" in mem else "")
    q, pas, r = results["segments"]
    lines += [
        f"- load s (checkpoint -> weights on the device): mrr_jax {fmt(results['jax_load_s'], 1)}"
        + "".join(f", PyTorch {a} {fmt(t['load_s'], 1)}" for a, t in results["torch"].items()),
        f"- segments per pair: query {q}, passage {pas}, prompt {r} tokens; mrr_jax's padded "
        f"token slots / real tokens = {fmt(results['padding_overhead'], 3)} (region buckets)",
        f"- mrr_jax `{base['plan_arg']}` first call (compile + one batch per shape): "
        f"{fmt(base['first_call_s'], 1)} s; model FLOPs per pair (full): "
        f"{results['full_flops_per_pair'] / 1e9:.2f} GFLOP (`Plan.flops`: matmuls, no LM head)",
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
