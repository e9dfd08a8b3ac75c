"""Random checkpoints of real model shapes, for benchmarking without downloading weights.

``write_random_model("mistral-7b")`` writes a Hugging Face directory (``config.json``,
``model.safetensors`` or shards plus ``model.safetensors.index.json``, bfloat16) with the exact
shape of that family's public checkpoint (hidden size, layers, heads, kv heads, head dim, MLP,
vocabulary, RoPE theta, sliding window, Qwen2's q/k/v biases, Gemma2's extra norms and
soft-caps) and the SmolLM2 tokenizer files copied in, so the benchmark's text pairs tokenize.
Weights are N(0, 0.02) from numpy (norm scales the identity), written tensor by tensor: no
framework model is ever built, so a 7B checkpoint costs its file size in disk and a few hundred
MiB of host memory. The directory is cached (``<cache>/random/<name>``) and reused.

The tokenizer is SmolLM2's (ids < 49152). A family whose vocabulary is smaller (Mistral-7B:
32000) gets its vocabulary raised to the tokenizer's size, which is recorded in
``config.json`` (``mrr_jax_random``) and reported: the embedding gather and the one scored
LM-head row do not change the FLOPs of a pair.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mrr_jax.core import spec
from mrr_jax.core.config import ModelConfig
from mrr_jax.weights import keymaps
from mrr_jax.weights.assets import cache_root, smollm2_dir

STD = 0.02
SHARD_BYTES = 5 * 1024**3  # like transformers' default max_shard_size="5GB"
CHUNK = 1 << 24  # elements drawn per work item (64 MiB of float32 scratch)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MARKER = "random_model.json"  # written last: its presence marks a complete directory

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
          "attention_bias": False, "mlp_bias": False}
_MISTRAL = {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
            "hidden_act": "silu"}
_QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
          "use_sliding_window": False}
_GEMMA2 = {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"],
           "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
           "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}


def _shape(d, layers, heads, kv, head_dim, ffn, vocab, **extra) -> dict:
    return {"hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": head_dim, "intermediate_size": ffn,
            "vocab_size": vocab, **extra}


# name -> (source checkpoint, config.json fields); from the public config.json of each.
FAMILIES: dict[str, tuple[str, dict]] = {
    "mistral-7b": ("mistralai/Mistral-7B-v0.1", _MISTRAL | _shape(
        4096, 32, 32, 8, 128, 14336, 32000, rope_theta=10000.0, sliding_window=4096,
        max_position_embeddings=32768, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "llama3-8b": ("meta-llama/Meta-Llama-3-8B", LLAMA | _shape(
        4096, 32, 32, 8, 128, 14336, 128256, rope_theta=500000.0,
        max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "qwen2-7b": ("Qwen/Qwen2-7B", _QWEN2 | _shape(
        3584, 28, 28, 4, 128, 18944, 152064, rope_theta=1000000.0, sliding_window=131072,
        max_window_layers=28, max_position_embeddings=131072, rms_norm_eps=1e-6,
        tie_word_embeddings=False)),
    "gemma2-9b": ("google/gemma-2-9b", _GEMMA2 | _shape(
        3584, 42, 16, 8, 256, 14336, 256000, rope_theta=10000.0, sliding_window=4096,
        query_pre_attn_scalar=256, max_position_embeddings=8192, rms_norm_eps=1e-6,
        tie_word_embeddings=True)),
    "llama-1b": ("meta-llama/Llama-3.2-1B", LLAMA | _shape(
        2048, 16, 32, 8, 64, 8192, 128256, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    # CPU-sized ones (tests, --quick): one per family.
    "tiny": ("(none: CPU-sized Llama)", LLAMA | _shape(
        64, 6, 4, 2, 16, 128, 49152, rope_theta=10000.0, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "tiny-mistral": ("(none: CPU-sized Mistral)", _MISTRAL | _shape(
        64, 6, 4, 2, 16, 128, 32000, rope_theta=10000.0, sliding_window=16,
        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "tiny-qwen2": ("(none: CPU-sized Qwen2)", _QWEN2 | _shape(
        64, 6, 4, 2, 16, 128, 49408, rope_theta=1000000.0, sliding_window=2048,
        max_window_layers=6, max_position_embeddings=2048, rms_norm_eps=1e-6,
        tie_word_embeddings=False)),
    "tiny-gemma2": ("(none: CPU-sized Gemma2)", _GEMMA2 | _shape(
        64, 6, 4, 2, 16, 128, 49152, rope_theta=10000.0, sliding_window=16,
        query_pre_attn_scalar=16, max_position_embeddings=2048, rms_norm_eps=1e-6,
        tie_word_embeddings=True)),
}
NAMES = tuple(FAMILIES)


def tokenizer_vocab(tokenizer_dir: Path) -> int:
    """Token ids the tokenizer can produce (its size, added tokens included)."""
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()


def family_config(name: str, layers: int | None = None, min_vocab: int = 0) -> dict:
    """The ``config.json`` dict of random model ``name``: the family's fields, depth cut to
    ``layers`` when given, vocabulary raised to ``min_vocab`` when smaller (both recorded under
    ``mrr_jax_random``), bfloat16."""
    if name not in FAMILIES:
        raise ValueError(f"unknown random model {name!r}; choose from {', '.join(NAMES)}")
    source, fields = FAMILIES[name]
    cfg = dict(fields)
    meta = {"name": name, "shape_of": source, "std": STD,
            "family_layers": cfg["num_hidden_layers"], "family_vocab_size": cfg["vocab_size"]}
    if layers is not None:
        if not 1 <= layers <= cfg["num_hidden_layers"]:
            raise ValueError(f"--layers must be in 1..{cfg['num_hidden_layers']} for {name}")
        cfg["num_hidden_layers"] = layers
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = min(cfg["max_window_layers"], layers)
    if cfg["vocab_size"] < min_vocab:
        meta["note"] = (f"{name}'s vocabulary ({cfg['vocab_size']}) is smaller than the "
                        f"tokenizer's ({min_vocab}): raised to {min_vocab}")
        cfg["vocab_size"] = min_vocab
    cfg.update(torch_dtype="bfloat16", dtype="bfloat16", mrr_jax_random=meta)
    return cfg


def default_dir(name: str, layers: int | None = None, cache_dir: str | Path | None = None
                ) -> Path:
    """``<cache_dir or $MRR_JAX_CACHE or ~/.cache/mrr_jax>/random/<name>[-L<layers>]``."""
    base = Path(cache_dir).expanduser() if cache_dir else cache_root() / "random"
    return base / (name if layers is None else f"{name}-L{layers}")


def tensor_table(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF tensor name, HF shape, init) of every tensor, in the order the file stores them:
    the globals (HF keeps their shape), then layer by layer (projections [out, in], vectors
    flat: ``keymaps.hf_shape``); init: ``normal``, ``ones`` or ``zeros``."""
    def init(w: spec.Weight) -> str:
        if w.init == "norm":
            return "zeros" if cfg.norm_plus_one else "ones"
        return "normal"

    out = [(w.hf, spec.shape(w, cfg), init(w)) for w in spec.global_weights(cfg)]
    for i in range(cfg.num_layers):
        out += [(f"model.layers.{i}.{w.hf_name(cfg)}",
                 keymaps.hf_shape(w.n_in, spec.shape(w, cfg)), init(w))
                for w in spec.layer_weights(cfg)]
    return out


def shards(table: list[tuple[str, tuple[int, ...], str]], max_bytes: int | None = None
           ) -> list[list[tuple[str, tuple[int, ...], str]]]:
    """The table cut into consecutive groups of at most ``max_bytes`` (default
    ``SHARD_BYTES``) of bfloat16 each (a larger tensor gets a shard of its own)."""
    max_bytes = max_bytes or SHARD_BYTES
    groups: list[list] = [[]]
    size = 0
    for entry in table:
        n = 2 * math.prod(entry[1])
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += n
    return groups


def _bf16_bits(rng: np.random.Generator, n: int) -> bytes:
    """``n`` draws of N(0, STD) as bfloat16 bytes (float32 truncated to its top 16 bits)."""
    x = rng.standard_normal(n, dtype=np.float32)
    x *= STD
    return (x.view(np.uint32) >> 16).astype("<u2").tobytes()


def _work(table, seed: int) -> Iterator[tuple]:
    """(tensor index, chunk start, chunk size, init) of every chunk, in file order."""
    for t, (_, shape, init) in enumerate(table):
        n = math.prod(shape)
        for start in range(0, n, CHUNK):
            yield t, start, min(CHUNK, n - start), init, seed


def _chunk(item) -> bytes:
    t, start, size, init, seed = item
    if init == "ones":
        return np.full(size, 0x3F80, "<u2").tobytes()  # bfloat16 1.0
    if init == "zeros":
        return bytes(2 * size)
    return _bf16_bits(np.random.default_rng([seed, t, start]), size)


def write_safetensors(path: Path, table, seed: int, workers: int) -> None:
    """One safetensors file of bfloat16 tensors, drawn in parallel chunks and written in
    order (at most ``2 * workers`` chunks in memory)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in table:
        n = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f, ThreadPoolExecutor(workers) as pool:
        f.write(struct.pack("<Q", len(blob)) + blob)
        pending = []
        for item in _work(table, seed):
            pending.append(pool.submit(_chunk, item))
            if len(pending) >= 2 * workers:
                f.write(pending.pop(0).result())
        for fut in pending:
            f.write(fut.result())


def write_tensors(out: Path, config: dict, seed: int, workers: int) -> None:
    """``config.json`` (``config``, with an ``mrr_jax_random`` entry naming it) and the random
    bfloat16 safetensors of that model in ``out`` (sharded like transformers above
    ``SHARD_BYTES``): N(0, STD) weights, norm scales at their identity."""
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    cfg = ModelConfig.from_hf(config, source=f"random model {config['mrr_jax_random']['name']}")
    groups = shards(tensor_table(cfg))
    if len(groups) == 1:
        write_safetensors(out / "model.safetensors", groups[0], seed, workers)
    else:
        weight_map, total = {}, 0
        for i, group in enumerate(groups):
            fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            # Seeds differ per shard: tensor indices restart at 0 in each.
            write_safetensors(out / fname, group, seed * 100003 + i, workers)
            for name, shape, _ in group:
                weight_map[name] = fname
                total += 2 * math.prod(shape)
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1) + "\n")


def write_random_model(name: str, out: str | Path | None = None, *, layers: int | None = None,
                       seed: int = 0, cache_dir: str | Path | None = None,
                       workers: int | None = None, log=None) -> Path:
    """The directory of random model ``name`` (see the module docstring), written on first use
    and reused after (written under a temporary name, then renamed). ``out``: the model
    directory itself (default :func:`default_dir`)."""
    tok_dir = smollm2_dir()
    config = family_config(name, layers, min_vocab=tokenizer_vocab(tok_dir))
    config["mrr_jax_random"]["seed"] = seed
    out = Path(out).expanduser() if out else default_dir(name, layers, cache_dir)
    marker = out / MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == config:
            return out
        raise FileExistsError(f"{out} holds a different random model ({marker}); remove it or "
                              "choose another --random-model-dir")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and is no random model: not touched")
    out.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"writing random {name} ({config['num_hidden_layers']} layers) into {out} ...")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for fname in TOKENIZER_FILES:
            if (tok_dir / fname).is_file():
                shutil.copy(tok_dir / fname, tmp / fname)
        write_tensors(tmp, config, seed, workers or min(8, os.cpu_count() or 1))
        (tmp / MARKER).write_text(json.dumps(config, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not marker.is_file():  # else another process won the rename: use its directory
            raise
    return out
