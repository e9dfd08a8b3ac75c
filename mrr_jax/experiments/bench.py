"""Throughput per plan, side by side with the PyTorch path on the same pairs and weights.

    python -m mrr_jax.bench                      # SmolLM2-135M, the default plan grid
    python -m mrr_jax.bench --quick              # a smaller, faster run
    python -m mrr_jax.bench --plans "full;depth=12" --pairs 32 --json bench.json
    python -m mrr_jax.bench --random-model mistral-7b --dtype bfloat16   # a 7B shape, GPU/TPU

One run measures, on the same tokenized pairs:

* mrr_jax, per plan: a warm-up (one batch per distinct compiled shape: compile + first run),
  then the best of ``--repeats`` timed passes over all pairs -> pairs/s;
* PyTorch ``transformers`` (the full model only: it has no compressed plans), eager and sdpa
  attention, on the same length-sorted batches, right-padded, scoring only the last real
  token's "Yes" logit (the LM head runs on one position per row), on jax's device (CUDA when
  jax runs on a GPU, else the CPU; none on a TPU) in the same dtype (``chips.torch_peer``);
* load seconds of both sides (checkpoint -> weights on the device) and compile seconds
  (first call minus the steady-state time of the same rows);
* achieved model TFLOP/s (pairs/s x ``Plan.flops``; the PyTorch peers: the full model's) and
  MFU against the chip's bfloat16 dense peak (``chips``; ``--peak-tflops`` overrides, and
  without a known peak -- a CPU -- no MFU is shown);
* the predicted speed-up of each plan (``Plan.flops`` over the pairs' real segment lengths),
  the measured one, and the fraction of the predicted saving that was realised;
* optionally (``--compile-check``), compile time per plan in two fresh subprocesses that share
  one empty persistent compilation cache: cold (the first one) and warm (the second one);
* peak resident memory of this process and of the subprocesses.

Pairs are real text that ships with Python: a standard-library module's docstring summary line
(continued by the rest of that docstring) is the query, cut to a fixed number of tokens, and its
docstrings (continued by other modules' when short) are the passage, cut so that every pair is
exactly ``--seq-len`` tokens with the same segment lengths (one compiled program per plan).
``--random-model NAME`` benchmarks a random checkpoint of a real family's exact shape
(``random_model``: mistral-7b, llama3-8b, qwen2-7b, gemma2-9b, llama-1b, tiny...), written once
into a cache directory; ``--layers N`` cuts its depth. Speed is reported as ratios measured in
one run, never asserted. Cases are timed round robin so
that load from other processes hits them alike; the report keeps the load average per round.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.evaluation.grid import split_plans
from mrr_jax.experiments import random_model
from mrr_jax.experiments.bench_pairs import make_pairs, text_pairs
from mrr_jax.experiments.bench_report import (
    available_cores,
    environment,
    markdown,
    maxrss_mib,
    own_peak_mib,
    plan_rows,
    to_jsonable,
)
from mrr_jax.experiments.bench_timing import (
    jax_case,
    load_torch,
    log,
    measure,
    padded_tokens,
    predicted_flops,
    timed,
    torch_case,
    warm_up,
    yes_token_id,
)
from mrr_jax.runtime import chips

__all__ = ["main", "parse_args", "run", "text_pairs"]

DEFAULT_PLANS = ("full", "depth=20", "depth=15", "compress=8:2", "compress=4:2 depth=20",
                 "compress=8:2,16:2 depth=24", "compress=4:4 depth=16")
QUICK_PLANS = ("full", "depth=15", "compress=4:2 depth=20")
# Defaults, and what --quick changes (explicit flags win over both).
DEFAULTS = dict(pairs=32, seq_len=256, batch_size=32, repeats=2, compile_batch=4)
QUICK = dict(pairs=16, seq_len=128, batch_size=16, repeats=1, compile_batch=2)
PARITY_TOL = {"float32": 1e-3}  # max |score diff| allowed vs PyTorch (bfloat16: reported only)


# --------------------------------------------------------------------------- compile check
def compile_probe(args: argparse.Namespace) -> dict:
    """Subprocess side of ``--compile-check``: per plan, first-call minus second-call time
    on one batch of ``--compile-batch`` pairs."""
    from mrr_jax import Reranker

    rr = Reranker.from_pretrained(args.model, dtype=args.dtype)
    encoded = make_pairs(rr, args.compile_batch, args.seq_len)
    out = {}
    for text in args.plans:
        call = functools.partial(rr.score_encoded, encoded, plan=Plan.parse(text),
                                 batch_size=len(encoded))
        first, second = timed(call)[0], timed(call)[0]
        out[text] = {"first_s": first, "second_s": second, "compile_s": first - second}
    return {"plans": out, "peak_mib": own_peak_mib(), "maxrss_mib": maxrss_mib()}


def run_probe(args: argparse.Namespace, cache_dir: Path) -> dict:
    """Runs ``compile_probe`` in a fresh interpreter with ``cache_dir`` as the persistent
    compilation cache; returns its JSON."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding mrr_jax/
    env = dict(os.environ, MRR_JAX_COMPILE_CACHE=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "probe.json"
        cmd = [sys.executable, "-m", "mrr_jax.bench", "--compile-probe", "--model",
               str(args.model), "--plans", ";".join(args.plans), "--seq-len", str(args.seq_len),
               "--dtype", args.dtype, "--compile-batch", str(args.compile_batch),
               "--json", str(result)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"compile probe failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(result.read_text())


def compile_check(args: argparse.Namespace) -> dict:
    """Cold and warm compile time per plan: two probes sharing one new, empty cache dir."""
    with tempfile.TemporaryDirectory(prefix="mrr_jax_bench_xla_") as cache:
        cold = run_probe(args, Path(cache))
        warm = run_probe(args, Path(cache))
    return {"cold": cold, "warm": warm, "children_peak_mib": max(
        cold["peak_mib"], warm["peak_mib"]), "children_maxrss_mib": maxrss_mib(
        resource.RUSAGE_CHILDREN)}


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` fills the flags not given with smaller values."""
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.bench",
        description="Throughput per plan (mrr_jax) against PyTorch transformers, same pairs "
                    "and weights, one run. Prints a Markdown table.")
    p.add_argument("--model", type=Path, default=None,
                   help="HF model directory (default: SmolLM2-135M-Instruct, converted once)")
    p.add_argument("--random-model", choices=random_model.NAMES, default=None,
                   help="benchmark a random checkpoint of this family's exact shape instead "
                        "(written once, then reused; SmolLM2's tokenizer)")
    p.add_argument("--random-model-dir", type=Path, default=None,
                   help="cache folder of the random models (default: "
                        "~/.cache/mrr_jax/random, or $MRR_JAX_CACHE/random); the model is "
                        "<dir>/<name>[-L<layers>]")
    p.add_argument("--layers", type=int, default=None,
                   help="--random-model only: cut its depth to this many layers")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the chip's peak TFLOP/s for MFU (default: the bf16 dense peak of a "
                        "known device kind; none on a CPU)")
    p.add_argument("--plans", type=str, default=None,
                   help='";"-separated plans, the first is the baseline; "full" (or "") = the '
                        f'whole model (default: {";".join(DEFAULT_PLANS)})')
    p.add_argument("--pairs", type=int, default=None,
                   help=f"number of pairs (default {DEFAULTS['pairs']}, quick {QUICK['pairs']})")
    p.add_argument("--seq-len", type=int, default=None,
                   help=f"tokens per pair (default {DEFAULTS['seq_len']}, quick "
                        f"{QUICK['seq_len']})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"default {DEFAULTS['batch_size']}, quick {QUICK['batch_size']}")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed passes, best kept (default {DEFAULTS['repeats']}, quick "
                        f"{QUICK['repeats']})")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of both mrr_jax and PyTorch")
    p.add_argument("--quick", action="store_true",
                   help=f"smaller run: plans {';'.join(QUICK_PLANS)} and {QUICK}")
    p.add_argument("--compile-check", action=argparse.BooleanOptionalAction, default=True,
                   help="cold/warm compile time per plan in two subprocesses (default on)")
    p.add_argument("--compile-batch", type=int, default=None,
                   help=f"pairs in the compile check's one batch (default "
                        f"{DEFAULTS['compile_batch']})")
    p.add_argument("--torch", dest="torch_attn", default="eager,sdpa",
                   help='PyTorch attention implementations to time, "," separated, or "none"')
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: all available cores)")
    p.add_argument("--json", type=Path, default=None, help="write every number here")
    p.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    text = args.plans if args.plans is not None else ";".join(
        QUICK_PLANS if args.quick else DEFAULT_PLANS)
    args.plans = split_plans(text)
    for key in ("pairs", "seq_len", "batch_size", "repeats", "compile_batch"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    for t in args.plans:
        try:
            Plan.parse(t)
        except ValueError as e:
            p.error(str(e))
    args.torch_attn = [] if args.torch_attn == "none" else args.torch_attn.split(",")
    if args.random_model and args.model is not None:
        p.error("--model and --random-model exclude each other")
    if args.layers is not None and not args.random_model:
        p.error("--layers needs --random-model")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        p.error("--peak-tflops must be > 0")
    if args.model is None and not args.random_model:
        from mrr_jax.weights.assets import smollm2_dir

        args.model = smollm2_dir()
    return args


def load_jax(args: argparse.Namespace):
    """(Reranker, seconds): ``Reranker.from_pretrained`` until its weights are on the device."""
    import jax

    from mrr_jax import Reranker

    t0 = time.perf_counter()
    rr = Reranker.from_pretrained(args.model, dtype=args.dtype)
    jax.block_until_ready(rr.params)
    return rr, time.perf_counter() - t0


def torch_cases(args: argparse.Namespace, rr, encoded, peer: chips.Peer) -> tuple[list, dict]:
    """(timed PyTorch cases, {attn: reason} of those skipped) on the peer's device and dtype."""
    if not args.torch_attn or peer.device is None:
        return [], {a: peer.note for a in args.torch_attn}
    import torch
    import transformers  # noqa: F401  (imported before the load timings)

    if not peer.cuda:
        torch.set_num_threads(args.threads or available_cores())
    yes_id = yes_token_id(rr)
    cases, skipped = [], {}
    for attn in args.torch_attn:
        t0 = time.perf_counter()
        try:
            model = load_torch(args.model, attn, peer.dtype, peer.device)
        except (ValueError, ImportError) as e:  # e.g. Gemma2 has no sdpa in transformers
            skipped[attn] = str(e).split(". ")[0]
            log(f"  PyTorch {attn} skipped: {skipped[attn]}")
            continue
        case = torch_case(model, attn, encoded, args.batch_size, yes_id)
        case.load_s = time.perf_counter() - t0
        cases.append(case)
    return cases, skipped


def accelerator(args: argparse.Namespace, peer: chips.Peer) -> dict:
    """The device both sides run on, its peak for MFU and the PyTorch peer's placement."""
    import jax

    kind = jax.devices()[0].device_kind
    peak, source = chips.peak_tflops(kind, args.peak_tflops)
    out = {"device_kind": kind, "device_count": jax.device_count(), "peak_tflops": peak,
           "peak_source": source, "torch_device": peer.device, "torch_dtype": peer.dtype,
           "torch_note": peer.note, "random_model": None}
    if args.random_model:
        config = json.loads((Path(args.model) / "config.json").read_text())
        out["random_model"] = config.get("mrr_jax_random")
    if peer.cuda:
        import torch

        out["torch_device_name"] = torch.cuda.get_device_name(0)
    return out


def resolve_model(args: argparse.Namespace) -> None:
    """``--random-model``: writes (or reuses) its checkpoint and makes it ``args.model``."""
    if args.random_model and args.model is None:
        args.model = random_model.write_random_model(
            args.random_model, layers=args.layers, cache_dir=args.random_model_dir, log=log)


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark; returns every number (what ``--json`` writes)."""
    import jax

    resolve_model(args)
    peer = chips.torch_peer(jax.default_backend(), args.dtype)
    env = environment(args) | accelerator(args, peer) | {"loadavg_start": os.getloadavg()[0]}
    rr, jax_load_s = load_jax(args)
    encoded = make_pairs(rr, args.pairs, args.seq_len)
    n = len(encoded)
    plans = [rr.resolve_plan(text) for text in args.plans]
    full = rr.resolve_plan(None)
    jax_cases = [jax_case(rr, encoded, plan, args.batch_size) for plan in plans]
    log(f"{n} pairs x {args.seq_len} tokens; mrr_jax warm-up (compile + first batch) ...")
    warm_up(jax_cases)
    memory = {"after_jax_mib": maxrss_mib()}
    peers, skipped = torch_cases(args, rr, encoded, peer)
    warm_up(peers)
    log(f"timed passes ({args.repeats} round(s), round robin) ...")
    loads = measure(jax_cases + peers, args.repeats, n)
    memory["after_torch_mib"] = maxrss_mib()
    e = encoded[0]
    results: dict = {"plans": [], "torch": {}, "torch_skipped": skipped, "loadavg_rounds": loads,
                     "segments": [len(e.query), len(e.passage), len(e.prompt)],
                     "padding_overhead": padded_tokens(encoded, args.batch_size) / (
                         n * args.seq_len),
                     "jax_load_s": jax_load_s,
                     "full_flops_per_pair": predicted_flops(rr.cfg, encoded, full),
                     "model_params": model_params(rr)}
    for text, plan, case in zip(args.plans, plans, jax_cases):
        results["plans"].append(case.result(n) | {
            "plan": str(plan), "plan_arg": text, "full": plan == full,
            "flops_per_pair": predicted_flops(rr.cfg, encoded, plan)})
    for case in peers:
        results["torch"][case.name.removeprefix("PyTorch ")] = case.result(n)
    check_parity(results, args.dtype)
    if args.compile_check:
        log("compile check (two subprocesses: cold and warm cache) ...")
        results["compile"] = compile_check(args)
        memory["children_mib"] = results["compile"]["children_peak_mib"]
    results["memory"] = memory
    results["env"] = env | {"loadavg_end": os.getloadavg()[0]}
    plan_rows(results)
    return results


def model_params(rr) -> int:
    """Parameters of the backbone (exit heads excluded)."""
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(rr.params)))


def check_parity(results: dict, dtype: str) -> None:
    """Max |score difference| between mrr_jax's first plan and each PyTorch run; a failure
    (above ``PARITY_TOL``, float32 only, and only when that plan is the full model -- its
    ``full`` key: however it was spelled, ``full``, ``""`` or ``depth=L``) is recorded."""
    base = results["plans"][0]
    for attn, t in results["torch"].items():
        t["max_abs_diff"] = float(np.abs(t["scores"] - base["scores"]).max())
        tol = PARITY_TOL.get(dtype)
        if tol is not None and base["full"] and not t["max_abs_diff"] <= tol:
            results["parity_failed"] = (f"PyTorch {attn} differs from mrr_jax's full plan by "
                                        f"{t['max_abs_diff']:.2e} > {tol}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints the Markdown report; exit status 1 on a parity failure."""
    args = parse_args(argv)
    if args.torch_attn:  # leave GPU memory to the PyTorch peer (jax would take 75% up front)
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    resolve_model(args)
    if args.compile_probe:
        out = compile_probe(args)
        if args.json:
            args.json.write_text(json.dumps(out))
        return 0
    results = run(args)
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_jsonable(results), indent=1))
    return 1 if results.get("parity_failed") else 0


if __name__ == "__main__":
    sys.exit(main())
