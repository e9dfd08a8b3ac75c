"""Throughput per plan, side by side with the PyTorch path on the same pairs and weights.

    python -m mrr_jax.bench                      # SmolLM2-135M, the default plan grid
    python -m mrr_jax.bench --quick              # a smaller, faster run
    python -m mrr_jax.bench --plans "full;depth=12" --pairs 32 --json bench.json

One run measures, on the same tokenized pairs:

* mrr_jax, per plan: a warm-up (one batch per distinct compiled shape: compile + first run),
  then the best of ``--repeats`` timed passes over all pairs -> pairs/s;
* PyTorch ``transformers`` (the full model only: it has no compressed plans), eager and sdpa
  attention, on the same length-sorted batches, right-padded, scoring only the last real
  token's "Yes" logit (the LM head runs on one position per row);
* the predicted speed-up of each plan (``Plan.flops`` over the pairs' real segment lengths),
  the measured one, and the fraction of the predicted saving that was realised;
* optionally (``--compile-check``), compile time per plan in two fresh subprocesses that share
  one empty persistent compilation cache: cold (the first one) and warm (the second one);
* peak resident memory of this process and of the subprocesses.

Pairs are real text that ships with Python: a standard-library module's docstring summary line
(continued by the rest of that docstring) is the query, cut to a fixed number of tokens, and its
docstrings (continued by other modules' when short) are the passage, cut so that every pair is
exactly ``--seq-len`` tokens with the same segment lengths (one compiled program per plan).
Speed is reported as ratios measured in one run, never asserted. Cases are timed round robin so
that load from other processes hits them alike; the report keeps the load average per round.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair

if TYPE_CHECKING:
    from mrr_jax.core.config import ModelConfig
    from mrr_jax.inference.reranker import Reranker

DEFAULT_PLANS = ("full", "depth=20", "depth=15", "compress=8:2", "compress=4:2 depth=20",
                 "compress=8:2,16:2 depth=24", "compress=4:4 depth=16")
QUICK_PLANS = ("full", "depth=15", "compress=4:2 depth=20")
# Defaults, and what --quick changes (explicit flags win over both).
DEFAULTS = dict(pairs=32, seq_len=256, batch_size=32, repeats=2, compile_batch=4)
QUICK = dict(pairs=16, seq_len=128, batch_size=16, repeats=1, compile_batch=2)
PARITY_TOL = {"float32": 1e-3}  # max |score diff| allowed vs PyTorch (bfloat16: reported only)
QUERY_SEGMENT = 24  # tokens of the query segment (bos + "A: " + query + "\n"): a bucket size
TORCH_WARM_ROWS = 4


# --------------------------------------------------------------------------- pairs
@functools.cache
def stdlib_documents() -> tuple[tuple[str, str], ...]:
    """(summary line, rest) of every top-level standard-library module with a docstring.

    "rest" is the module docstring after its first line, then the docstrings of its classes
    and functions. Read with ``ast`` (no module is imported), in file-name order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        doc = ast.get_docstring(tree)
        if not doc or not doc.strip().splitlines()[0].strip():
            continue
        summary, _, rest = doc.strip().partition("\n")
        inner = [ast.get_docstring(node) for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        body = "\n\n".join(t.strip() for t in [rest, *inner] if t and t.strip())
        if body:
            docs.append((summary.strip(), body))
    if not docs:
        raise RuntimeError(f"no documented modules under {root}: cannot build benchmark pairs")
    return tuple(docs)


def text_pairs(n: int, min_chars: int) -> list[tuple[str, str]]:
    """``n`` deterministic (query, passage) pairs; each passage has >= ``min_chars`` characters.

    Pair i: module ``i % M``'s summary line, continued by the rest of its docstring, is the
    query (``make_pairs`` cuts it to a fixed number of tokens); its text is the passage start,
    continued by other modules' texts (a different stride on each pass over the M modules)."""
    docs = stdlib_documents()
    m = len(docs)
    pairs = []
    for i in range(n):
        summary, passage = docs[i % m]
        step = 1 + i // m
        j = i % m
        while len(passage) < min_chars:
            j = (j + step) % m
            passage += "\n\n" + docs[j][1]
        pairs.append((f"{summary} {docs[i % m][1][:400]}", passage))
    return pairs


def make_pairs(rr: Reranker, n: int, seq_len: int) -> list[EncodedPair]:
    """``n`` tokenized pairs, each exactly ``seq_len`` tokens with the same segment lengths.

    The query segment is ``QUERY_SEGMENT`` tokens (a quarter of the room if that is less), the
    prompt segment is fixed, the passage fills the rest; uniform lengths mean one compiled
    program per plan (mrr_jax) and no padding (PyTorch)."""
    probe = rr.encode([("q", "p")], query_max_length=1)[0]
    prompt_len, sep_len = len(probe.prompt), len(probe.query) - 2  # query: bos, "q"-ish, sep
    max_length = seq_len - prompt_len  # query + passage segments
    query_cap = min(QUERY_SEGMENT, max_length // 4) - 1 - sep_len
    if query_cap < 1:
        raise ValueError(f"--seq-len {seq_len} is too short: the prompt segment alone is "
                         f"{prompt_len} tokens; use at least {prompt_len + 4 * (sep_len + 2)}")
    encoded = rr.encode(text_pairs(n, min_chars=8 * seq_len), max_length=max_length,
                        query_max_length=query_cap)
    shapes = {(len(e.query), len(e.passage), len(e.prompt)) for e in encoded}
    if len(shapes) != 1 or len(encoded[0]) != seq_len:
        raise RuntimeError(f"pairs are not all {seq_len} tokens with equal segments: {shapes}")
    return encoded


# --------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Case:
    """One timed configuration: ``warm_up`` (first call), ``score_all`` (scores [n]) and what
    was measured."""

    name: str
    warm_up: Callable[[], object]
    score_all: Callable[[], np.ndarray]
    warm_rows: int = 0  # pairs scored by the warm-up
    first_call_s: float = 0.0
    times_s: list[float] = dataclasses.field(default_factory=list)
    scores: np.ndarray | None = None

    def result(self, n: int) -> dict:
        """pairs_per_s (best pass), best_s, times_s, first_call_s, compile_est_s (first call
        minus the steady-state time of its rows) and scores [n]."""
        best = min(self.times_s)
        return {"pairs_per_s": n / best, "best_s": best, "times_s": self.times_s,
                "first_call_s": self.first_call_s,
                "compile_est_s": self.first_call_s - best * self.warm_rows / n,
                "scores": self.scores}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call; results are host numpy arrays, so the call has ended."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def warm_up(cases: Sequence[Case]) -> None:
    """Times each case's first call."""
    for case in cases:
        case.first_call_s = timed(case.warm_up)[0]
        log(f"  {case.name}: first call {case.first_call_s:.1f} s")


def measure(cases: Sequence[Case], repeats: int, n: int) -> list[float]:
    """``repeats`` rounds over all cases in turn (round robin, so that a change in the
    machine's load hits every case alike); each case keeps its pass times and last scores.
    Returns the 1-minute load average at the start of each round."""
    loads = []
    for r in range(repeats):
        loads.append(os.getloadavg()[0])
        for case in cases:
            t, case.scores = timed(case.score_all)
            case.times_s.append(t)
            log(f"  round {r + 1}/{repeats} {case.name}: {n / t:.2f} pairs/s")
    return loads


# --------------------------------------------------------------------------- mrr_jax
def parse_plan(text: str) -> Plan:
    """``full`` (or empty) is the full model; anything else is ``Plan.parse`` text."""
    text = text.strip()
    return Plan() if text in ("", "full") else Plan.parse(text)


def shape_representatives(encoded: Sequence[EncodedPair], batch_size: int) -> list[list[int]]:
    """One batch (indices, as ``score_encoded`` forms them) per distinct compiled shape."""
    seen: dict[tuple, list[int]] = {}
    for idx in batching.plan_batches(encoded, batch_size):
        arrays = batching.pack([encoded[i] for i in idx],
                               batching.batch_bucket(len(idx), batch_size))
        key = tuple(arrays[k].shape for k in ("q_ids", "p_ids", "r_ids"))
        seen.setdefault(key, idx)
    return list(seen.values())


def jax_case(rr: Reranker, encoded: Sequence[EncodedPair], plan: Plan, batch_size: int) -> Case:
    """mrr_jax under ``plan``; the warm-up scores one batch per compiled shape."""
    reps = [[encoded[i] for i in idx] for idx in shape_representatives(encoded, batch_size)]

    def first() -> None:
        for rows in reps:
            rr.score_encoded(rows, plan=plan, batch_size=batch_size)

    def score_all() -> np.ndarray:
        return np.asarray(rr.score_encoded(encoded, plan=plan, batch_size=batch_size)[0],
                          np.float32)

    return Case(f"mrr_jax {plan}", first, score_all, warm_rows=sum(map(len, reps)))


def predicted_flops(cfg: ModelConfig, encoded: Sequence[EncodedPair], plan: Plan) -> float:
    """Mean predicted forward FLOPs per pair under ``plan`` (``Plan.flops``)."""
    return float(np.mean([plan.flops(cfg, len(e.query), len(e.passage), len(e.prompt))
                          for e in encoded]))


def padded_tokens(encoded: Sequence[EncodedPair], batch_size: int) -> int:
    """Token slots mrr_jax computes at the first layer (bucketed regions x padded batch)."""
    total = 0
    for idx in batching.plan_batches(encoded, batch_size):
        arrays = batching.pack([encoded[i] for i in idx],
                               batching.batch_bucket(len(idx), batch_size))
        total += sum(arrays[k].size for k in ("q_ids", "p_ids", "r_ids"))
    return total


# --------------------------------------------------------------------------- PyTorch
def yes_token_id(rr: Reranker) -> int:
    """The id of "Yes" (the exit heads' LM-head row), as ``Reranker.from_pretrained`` finds it."""
    ids = rr.tokenizer.encode("Yes", add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"'Yes' is {len(ids)} tokens for this tokenizer")
    return ids[0]


def load_torch(model_dir: Path, attn: str, dtype: str):
    """The transformers causal LM (``LlamaForCausalLM`` for Llama) in eval mode."""
    import torch
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), attn_implementation=attn).eval()


def torch_scores(model, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]],
                 yes_id: int) -> np.ndarray:
    """"Yes" logits [n] at each pair's last token: right-padded batches through the decoder,
    then the LM head on the gathered last real hidden state only ([B, D] -> [B, V])."""
    import torch

    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = np.zeros(len(encoded), np.float32)
    with torch.inference_mode():
        for idx in batches:
            lengths = [len(encoded[i]) for i in idx]
            ids = torch.full((len(idx), max(lengths)), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, i in enumerate(idx):
                ids[b, :lengths[b]] = torch.tensor(encoded[i].input_ids)
                mask[b, :lengths[b]] = 1
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            last = hidden[torch.arange(len(idx)), torch.tensor(lengths) - 1]
            out[list(idx)] = model.lm_head(last)[:, yes_id].float().numpy()
    return out


def torch_case(model, attn: str, encoded: Sequence[EncodedPair], batch_size: int,
               yes_id: int) -> Case:
    """PyTorch on the same length-sorted batches as mrr_jax; nothing to compile, so the
    warm-up is a few rows of the first batch."""
    batches = batching.plan_batches(encoded, batch_size)
    head = batches[0][:TORCH_WARM_ROWS]
    return Case(f"PyTorch {attn}", lambda: torch_scores(model, encoded, [head], yes_id),
                lambda: torch_scores(model, encoded, batches, yes_id), warm_rows=len(head))


# --------------------------------------------------------------------------- compile check
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


def compile_probe(args: argparse.Namespace) -> dict:
    """Subprocess side of ``--compile-check``: per plan, first-call minus second-call time
    on one batch of ``--compile-batch`` pairs."""
    from mrr_jax import Reranker

    rr = Reranker.from_pretrained(args.model, dtype=args.dtype)
    encoded = make_pairs(rr, args.compile_batch, args.seq_len)
    out = {}
    for text in args.plans:
        call = functools.partial(rr.score_encoded, encoded, plan=parse_plan(text),
                                 batch_size=len(encoded))
        first, second = timed(call)[0], timed(call)[0]
        out[text] = {"first_s": first, "second_s": second, "compile_s": first - second}
    return {"plans": out, "peak_mib": own_peak_mib(), "maxrss_mib": maxrss_mib()}


def run_probe(args: argparse.Namespace, cache_dir: Path) -> dict:
    """Runs ``compile_probe`` in a fresh interpreter with ``cache_dir`` as the persistent
    compilation cache; returns its JSON."""
    root = str(Path(__file__).resolve().parents[1])
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


# --------------------------------------------------------------------------- report
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
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
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


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` fills the flags not given with smaller values."""
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.bench",
        description="Throughput per plan (mrr_jax) against PyTorch transformers, same pairs "
                    "and weights, one run. Prints a Markdown table.")
    p.add_argument("--model", type=Path, default=None,
                   help="HF model directory (default: SmolLM2-135M-Instruct, converted once)")
    p.add_argument("--plans", type=str, default=None,
                   help='";"-separated plans, the first is the baseline; "full" = the whole '
                        f'model (default: {";".join(DEFAULT_PLANS)})')
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
    args.plans = [t.strip() or "full" for t in text.split(";") if t.strip()]
    for key in ("pairs", "seq_len", "batch_size", "repeats", "compile_batch"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    for t in args.plans:
        try:
            parse_plan(t)
        except ValueError as e:
            p.error(str(e))
    args.torch_attn = [] if args.torch_attn == "none" else args.torch_attn.split(",")
    if args.model is None:
        from mrr_jax.weights.assets import smollm2_dir

        args.model = smollm2_dir()
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark; returns every number (what ``--json`` writes)."""
    from mrr_jax import Reranker

    env = environment(args) | {"loadavg_start": os.getloadavg()[0]}
    rr = Reranker.from_pretrained(args.model, dtype=args.dtype)
    encoded = make_pairs(rr, args.pairs, args.seq_len)
    n = len(encoded)
    plans = [parse_plan(text).resolve(rr.cfg.num_layers) for text in args.plans]
    jax_cases = [jax_case(rr, encoded, plan, args.batch_size) for plan in plans]
    log(f"{n} pairs x {args.seq_len} tokens; mrr_jax warm-up (compile + first batch) ...")
    warm_up(jax_cases)
    memory = {"after_jax_mib": maxrss_mib()}
    torch_cases = []
    if args.torch_attn:
        import torch

        torch.set_num_threads(args.threads or available_cores())
        yes_id = yes_token_id(rr)
        torch_cases = [torch_case(load_torch(args.model, attn, args.dtype), attn, encoded,
                                  args.batch_size, yes_id) for attn in args.torch_attn]
        warm_up(torch_cases)
    log(f"timed passes ({args.repeats} round(s), round robin) ...")
    loads = measure(jax_cases + torch_cases, args.repeats, n)
    memory["after_torch_mib"] = maxrss_mib()
    e = encoded[0]
    results: dict = {"plans": [], "torch": {}, "loadavg_rounds": loads,
                     "segments": [len(e.query), len(e.passage), len(e.prompt)],
                     "padding_overhead": padded_tokens(encoded, args.batch_size) / (
                         n * args.seq_len)}
    for text, plan, case in zip(args.plans, plans, jax_cases):
        results["plans"].append(case.result(n) | {
            "plan": str(plan), "plan_arg": text,
            "flops_per_pair": predicted_flops(rr.cfg, encoded, plan)})
    for attn, case in zip(args.torch_attn, torch_cases):
        results["torch"][attn] = case.result(n)
    check_parity(results, args.dtype)
    if args.compile_check:
        log("compile check (two subprocesses: cold and warm cache) ...")
        results["compile"] = compile_check(args)
        memory["children_mib"] = results["compile"]["children_peak_mib"]
    results["memory"] = memory
    results["env"] = env | {"loadavg_end": os.getloadavg()[0]}
    plan_rows(results)
    return results


def check_parity(results: dict, dtype: str) -> None:
    """Max |score difference| between mrr_jax's first plan and each PyTorch run; a failure
    (above ``PARITY_TOL``, float32 only, and only when that plan is ``full``) is recorded."""
    base = results["plans"][0]
    for attn, t in results["torch"].items():
        t["max_abs_diff"] = float(np.abs(t["scores"] - base["scores"]).max())
        tol = PARITY_TOL.get(dtype)
        if tol is not None and base["plan_arg"] == "full" and not t["max_abs_diff"] <= tol:
            results["parity_failed"] = (f"PyTorch {attn} differs from mrr_jax's full plan by "
                                        f"{t['max_abs_diff']:.2e} > {tol}")


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints the Markdown report; exit status 1 on a parity failure."""
    args = parse_args(argv)
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
