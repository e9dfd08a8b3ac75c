"""Checkpoint load time: mrr_jax against ``transformers`` on the same safetensors directory.

``python -m mrr_jax.experiments.load_bench --layers 16 --hidden 2048 ...`` writes (once, then
reuses) a random Llama-shaped **bfloat16** checkpoint (``random_model.write_tensors``: an HF
``config.json`` and safetensors written tensor by tensor from a fast numpy RNG), then times, in
separate child processes and alternating rounds,

* ``mrr``: ``Reranker.from_pretrained(dir, dtype=<dtype>, yes_token_id=0)`` (weights on the
  default device, read by ``mrr_jax.weights.hf``; the clock stops once every array is ready);
* ``hf``: ``transformers.AutoModelForCausalLM.from_pretrained(dir, torch_dtype=torch.bfloat16)``.

Each child reports its wall-clock seconds for the load alone (imports excluded), its resident
memory before the load and its peak (``ru_maxrss``). The parent prints one row per round and a
markdown summary table (median seconds, ratio mrr / hf, peak RSS). The first round may read
from disk, the next from the page cache; ``--drop-first`` leaves round 1 out of the medians.

The default shape (hidden 2048, 16 layers, MLP 5632, 16 heads of 128, 4 kv heads, vocabulary
32000, untied) has about 1.0B parameters: 2.0 GiB on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MARKER = "load_bench.json"  # written last: the shape the directory holds


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def shape_args(a: argparse.Namespace) -> dict:
    return {"hidden_size": a.hidden, "num_hidden_layers": a.layers,
            "intermediate_size": a.intermediate, "vocab_size": a.vocab,
            "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
            "head_dim": a.hidden // a.heads, "tie_word_embeddings": a.tied}


def write_checkpoint(out: Path, shape: dict, seed: int = 0) -> Path:
    """A random bfloat16 Llama checkpoint of ``shape`` in ``out`` (reused when its marker
    matches), written tensor by tensor by ``random_model.write_tensors``: weights N(0, 0.02),
    norm scales 1."""
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == shape:
        return out
    from mrr_jax.experiments import random_model

    config = {**random_model.LLAMA, **shape, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
              "mrr_jax_random": {"name": "load_bench", "std": random_model.STD}}
    out.mkdir(parents=True, exist_ok=True)
    random_model.write_tensors(out, config, seed, min(8, os.cpu_count() or 1))
    marker.write_text(json.dumps(shape))
    return out


def child(which: str, path: Path, dtype: str) -> dict:
    """Loads ``path`` once in this process; returns the measurements."""
    if which == "mrr":
        import jax

        from mrr_jax.inference.reranker import Reranker

        jax.devices()  # start the backend before the clock
        before = _rss_mib()
        t0 = time.perf_counter()
        rr = Reranker.from_pretrained(path, dtype=dtype, yes_token_id=0)
        jax.block_until_ready((rr.params, rr.heads))
        seconds = time.perf_counter() - t0
        n = sum(x.size for x in jax.tree.leaves(rr.params))
    else:
        import torch
        import transformers

        before = _rss_mib()
        t0 = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(path,
                                                                  torch_dtype=torch.bfloat16)
        seconds = time.perf_counter() - t0
        n = sum(p.numel() for p in model.parameters())
    return {"which": which, "seconds": seconds, "rss_before_mib": before,
            "peak_rss_mib": _peak_mib(), "params": int(n)}


def run_child(which: str, path: Path, dtype: str) -> dict:
    cmd = [sys.executable, "-m", "mrr_jax.experiments.load_bench", "--child", which,
           "--dir", str(path), "--dtype", dtype]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{which} child failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--tied", action="store_true", help="tie the LM head to the embedding")
    p.add_argument("--dir", type=Path, default=None,
                   help="checkpoint directory (default: /tmp/mrr_load_bench/<shape>)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                   help="mrr_jax's target dtype")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", choices=("mrr", "hf"), default=None, help="time one side only")
    p.add_argument("--drop-first", action="store_true",
                   help="leave round 1 (cold page cache) out of the summary")
    p.add_argument("--child", choices=("mrr", "hf"), default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.dir, a.dtype)))
        return
    shape = shape_args(a)
    path = a.dir or Path("/tmp/mrr_load_bench") / (
        f"llama_d{a.hidden}_l{a.layers}_f{a.intermediate}_v{a.vocab}_h{a.heads}_k{a.kv_heads}"
        + ("_tied" if a.tied else ""))
    t0 = time.perf_counter()
    write_checkpoint(path, shape)
    size = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**30
    print(f"checkpoint {path} ({size:.2f} GiB; ready in {time.perf_counter() - t0:.1f} s)",
          flush=True)
    sides = [a.only] if a.only else ["mrr", "hf"]
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(a.rounds):
        for s in sides if r % 2 == 0 else sides[::-1]:
            m = run_child(s, path, a.dtype)
            runs[s].append(m)
            print(f"round {r + 1} {s:>3}: {m['seconds']:7.2f} s  peak RSS "
                  f"{m['peak_rss_mib']:8.0f} MiB (before load {m['rss_before_mib']:.0f} MiB)",
                  flush=True)
    keep = slice(1, None) if a.drop_first and a.rounds > 1 else slice(None)
    med = {s: statistics.median(m["seconds"] for m in runs[s][keep]) for s in sides}
    print(f"\n{runs[sides[0]][0]['params'] / 1e9:.2f}B parameters, {size:.2f} GiB bf16 on disk, "
          f"mrr_jax dtype {a.dtype}, {a.rounds} rounds (median"
          f"{' of rounds 2..' if keep.start else ''}):\n")
    print("| loader | seconds (median) | min | vs transformers | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for s in sides:
        label = "mrr_jax Reranker.from_pretrained" if s == "mrr" else \
            "transformers AutoModelForCausalLM"
        ratio = f"{med[s] / med['hf']:.2f}x" if "hf" in med else "-"
        print(f"| {label} | {med[s]:.2f} | {min(m['seconds'] for m in runs[s]):.2f} | {ratio} "
              f"| {max(m['peak_rss_mib'] for m in runs[s]):.0f} |")


if __name__ == "__main__":
    main()
