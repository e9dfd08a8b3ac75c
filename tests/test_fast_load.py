"""The placing loader (``mrr_jax.weights.streaming.load_params``, used by
``Reranker.from_pretrained``): checkpoints read straight into the compute dtype, onto the
default device or sharded over a mesh, equal to the host float32 loader (``load_hf_dir``, the
reference) bit for bit, or to its float32 -> bfloat16 rounding; bfloat16 files load into
bfloat16 exactly. Tiny random checkpoints of every family the spec covers (Llama untied,
Qwen2 with q/k/v biases, Gemma2 tied with its extra norms), saved by transformers."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import gguf
import jax
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from jax.sharding import PartitionSpec as P

from mrr_jax.core.config import ModelConfig
from mrr_jax.inference.reranker import Reranker
from mrr_jax.runtime import sharding
from mrr_jax.weights.gguf import GGUFSource, unpermute_qk
from mrr_jax.weights.hf import (
    SafetensorsSource,
    assemble_params,
    iter_safetensors,
    load_hf_dir,
    read_config,
    safetensors_files,
)
from mrr_jax.weights.streaming import load_params, param_shardings

BF16 = np.dtype(ml_dtypes.bfloat16)
KW = dict(yes_token_id=5, start_layer=2)  # no tokenizer; 3 layers
SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _save(tmp_path_factory, family: str, torch_dtype=torch.float32, **kw):
    torch.manual_seed(0)
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **SMALL, tie_word_embeddings=False, **kw))
    elif family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
            **SMALL, tie_word_embeddings=False, **kw))
    else:
        model = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
            **SMALL, head_dim=16, tie_word_embeddings=True, **kw))
    with torch.no_grad():  # norms and biases away from their 1 / 0 init: every value counts
        for p in model.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp(f"{family}_{str(torch_dtype).split('.')[-1]}")
    model.to(torch_dtype).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma2"])
def f32_dir(request, tmp_path_factory):
    return _save(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def bf16_dir(tmp_path_factory):
    return _save(tmp_path_factory, "llama", torch.bfloat16)


def _pairs(new, ref):
    flat, flat_ref = jax.tree.leaves_with_path(new), jax.tree.leaves_with_path(ref)
    assert [p for p, _ in flat] == [p for p, _ in flat_ref]
    return [(jax.tree_util.keystr(p), np.asarray(a), b) for (p, a), (_, b) in zip(flat, flat_ref)]


def _bits_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, \
        (what, got.dtype, want.dtype, got.shape, want.shape)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), what


def _load(path, dtype, mesh=None, **kw):
    """(config, params) through ``load_params``."""
    cfg = ModelConfig.from_hf(read_config(path))
    src = SafetensorsSource(safetensors_files(path))
    try:
        return cfg, load_params(cfg, src, dtype, mesh, name=str(path), **kw)
    finally:
        src.close()


@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "per-layer"])
def test_bf16_file_into_bf16_is_the_file(bf16_dir, chunk):
    """No float32 on the way: each bfloat16 array is the file's bytes (transposed)."""
    src = SafetensorsSource(safetensors_files(bf16_dir))
    assert {src.dtype(n) for n in src.shapes} == {BF16}  # really a bfloat16 checkpoint
    kw = {"chunk_bytes": chunk} if chunk else {}
    cfg, params = _load(bf16_dir, "bfloat16", **kw)
    _, ref = load_hf_dir(bf16_dir)  # float32: bf16 -> f32 is exact
    for what, got, want in _pairs(params, ref):
        _bits_equal(got, want.astype(BF16), what)
    # The same through the host loader straight into bfloat16.
    _, host = load_hf_dir(bf16_dir, BF16)
    for what, got, want in _pairs(params, host):
        _bits_equal(got, want, what)


@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "per-layer"])
def test_f32_file_matches_reference(f32_dir, chunk):
    """float32 target: bit-identical to the reference loader; bfloat16: its rounding."""
    kw = {"chunk_bytes": chunk} if chunk else {}
    _, ref = load_hf_dir(f32_dir)
    _, p32 = _load(f32_dir, "float32", **kw)
    for what, got, want in _pairs(p32, ref):
        _bits_equal(got, want, what)
    _, p16 = _load(f32_dir, "bfloat16", **kw)
    for what, got, want in _pairs(p16, ref):
        _bits_equal(got, want.astype(BF16), what)
    _, host16 = load_hf_dir(f32_dir, BF16)  # the host path, straight into bfloat16
    for what, got, want in _pairs(host16, ref):
        _bits_equal(got, want.astype(BF16), what)


def test_f16_file_into_bf16(tmp_path_factory):
    path = _save(tmp_path_factory, "llama", torch.float16)
    _, ref = load_hf_dir(path)
    _, p16 = _load(path, "bfloat16", chunk_bytes=1)
    for what, got, want in _pairs(p16, ref):
        _bits_equal(got, want.astype(BF16), what)


@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "per-layer"])
def test_sharded_over_a_mesh(f32_dir, chunk):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets 8 host CPU devices)")
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    kw = {"chunk_bytes": chunk} if chunk else {}
    cfg, params = _load(f32_dir, "bfloat16", mesh, **kw)
    _, ref = load_hf_dir(f32_dir)
    want_sh = sharding.tree_shardings(ref, mesh)
    assert jax.tree.leaves(want_sh) == jax.tree.leaves(param_shardings(cfg, mesh))
    for a, s in zip(jax.tree.leaves(params), jax.tree.leaves(want_sh)):
        assert a.sharding == s, (a.sharding, s)
    assert params["layers"]["gate"].sharding.spec == P(None, "fsdp", "tensor")  # really split
    for what, got, want in _pairs(params, ref):
        _bits_equal(got, want.astype(BF16), what)


def test_from_pretrained_bf16_and_mesh(f32_dir):
    """The public entry: params in bfloat16 (the rounding), heads float32 from the LM head's
    rows as stored (as before: not from the rounded weights), with a mesh sharded."""
    old = Reranker.from_pretrained(f32_dir, **KW, place=False)  # host, float32
    rr = Reranker.from_pretrained(f32_dir, dtype="bfloat16", **KW)
    for what, got, want in _pairs(rr.params, old.params):
        _bits_equal(got, want.astype(BF16), what)
    _bits_equal(np.asarray(rr.heads), np.asarray(old.heads), "heads")
    host = Reranker.from_pretrained(f32_dir, dtype="bfloat16", **KW, place=False)
    assert all(isinstance(a, np.ndarray) for a in jax.tree.leaves(host.params))
    for what, got, want in _pairs(host.params, rr.params):
        _bits_equal(got, want, what)
    if jax.device_count() >= 8:
        mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
        sh = Reranker.from_pretrained(f32_dir, dtype="bfloat16", **KW, mesh=mesh)
        for a, s in zip(jax.tree.leaves(sh.params),
                        jax.tree.leaves(sharding.tree_shardings(old.params, mesh))):
            assert a.sharding == s
        for what, got, want in _pairs(sh.params, rr.params):
            _bits_equal(got, want, what)
        _bits_equal(np.asarray(sh.heads), np.asarray(old.heads), "heads")


def test_errors_match_the_host_loader(bf16_dir, tmp_path):
    """A missing tensor is named before anything is read, as the host loader names it."""
    from safetensors.numpy import save_file

    src = SafetensorsSource(safetensors_files(bf16_dir))
    arrays = {}
    for n in src.shapes:
        a = np.empty(src.shapes[n], src.dtype(n))
        src.read_into(n, a)
        arrays[n] = a.astype(np.float32)
    del arrays["model.layers.1.mlp.up_proj.weight"]
    (tmp_path / "config.json").write_bytes((bf16_dir / "config.json").read_bytes())
    save_file(arrays, tmp_path / "model.safetensors")
    with pytest.raises(KeyError) as host:
        load_hf_dir(tmp_path)
    with pytest.raises(KeyError) as placed:
        _load(tmp_path, "bfloat16")
    assert str(host.value) == str(placed.value)
    assert "model.layers.1.mlp.up_proj.weight" in str(placed.value)


def test_gguf_source_native_types():
    """F16 / BF16 GGUF tensors are read in their stored type (no float32), q/k un-permuted;
    quantized ones dequantized to float32."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)  # HF layout [out, in]; 2 heads
    tensors = {}
    for name, qtype, data in [
        ("blk.0.attn_q.weight", gguf.GGMLQuantizationType.F16, w.astype(np.float16)),
        ("blk.0.attn_k.weight", gguf.GGMLQuantizationType.BF16,
         w.astype(BF16).view(np.uint8)),
        ("blk.0.ffn_up.weight", gguf.GGMLQuantizationType.F32, w),
    ]:
        tensors[name] = SimpleNamespace(name=name, tensor_type=qtype, data=data,
                                        shape=[8, 16])
    src = GGUFSource.__new__(GGUFSource)
    src._tensors = {n.split(".")[2]: t for n, t in tensors.items()}
    src.shapes = {k: (16, 8) for k in src._tensors}
    src._heads = {".attn_q.weight": 2, ".attn_k.weight": 1}
    for key, dt, want in [
        ("attn_q", np.float16, unpermute_qk(w, 2).astype(np.float16)),
        ("attn_k", BF16, unpermute_qk(w, 1).astype(BF16)),
        ("ffn_up", np.float32, w),
    ]:
        assert src.dtype(key) == dt
        out = np.empty((16, 8), dt)
        src.read_into(key, out)
        _bits_equal(out, want, key)


def test_host_assembly_holds_no_float32_model(bf16_dir):
    """Straight into bfloat16 on the host: numpy's peak is the bf16 model plus a tensor
    (the float32 loader needs twice the model)."""
    cfg = ModelConfig.from_hf(read_config(bf16_dir))
    files = safetensors_files(bf16_dir)
    model_bf16 = sum(a.nbytes for _, a in iter_safetensors(files))
    tracemalloc.start()
    try:
        params = assemble_params(cfg, iter_safetensors(files), BF16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(a.nbytes for a in jax.tree.leaves(params)) == model_bf16
    largest = max(a.nbytes for _, a in iter_safetensors(files))
    assert peak <= model_bf16 + 2 * largest + 65536, (peak, model_bf16)
