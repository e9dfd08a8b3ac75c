"""bfloat16 checkpoints (as Mistral / Llama / Qwen2 / Gemma2 ship): a tiny random Llama saved by
transformers in bfloat16 loads with ``load_hf_dir``, its weights are the bf16 values exactly (as
float32), and its logits equal the float32-upcast PyTorch model's."""

import copy

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers

from mrr_jax.core.decoder import lm_forward
from mrr_jax.weights.hf import SafetensorsFile, load_hf_dir, safetensors_files

LENGTHS = [11, 6]


def _llamas():
    """(the model in bfloat16, the same in float32 with bf16-rounded weights). The float32 twin
    is not ``bf16_model.float()``: that would also round the RoPE frequencies (a buffer)."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=10000.0, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # spread the weights so that every term matters
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name
                    else 0.15 * torch.randn_like(p))
            p.copy_(p.bfloat16().float())
    twin = copy.deepcopy(model)
    return model.to(torch.bfloat16), twin


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_bf16_checkpoint_loads_exactly(tmp_path, sharded):
    model, upcast = _llamas()
    bf16_dir, f32_dir = tmp_path / "bf16", tmp_path / "f32"
    model.save_pretrained(bf16_dir, **({"max_shard_size": "20KB"} if sharded else {}))
    files = safetensors_files(bf16_dir)
    assert len(files) > 1 if sharded else len(files) == 1
    dtypes = {dt for f in files for dt in SafetensorsFile(f).dtypes.values()}
    assert dtypes == {"BF16"}  # really a bf16 checkpoint
    upcast.save_pretrained(f32_dir)

    cfg, params = load_hf_dir(bf16_dir)
    cfg32, params32 = load_hf_dir(f32_dir)
    assert cfg == cfg32
    flat, flat32 = jax.tree.leaves_with_path(params), jax.tree.leaves_with_path(params32)
    assert [p for p, _ in flat] == [p for p, _ in flat32]
    for (path, a), (_, b) in zip(flat, flat32):
        assert a.dtype == np.float32, path
        np.testing.assert_array_equal(a, b, err_msg=str(path))  # the bf16 values, exactly
        np.testing.assert_array_equal(a, a.astype(ml_dtypes.bfloat16).astype(np.float32))

    rng = np.random.default_rng(1)
    ids = np.zeros((len(LENGTHS), max(LENGTHS)), np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = rng.integers(3, cfg.vocab_size, n)
        mask[b, :n] = 1
    with torch.no_grad():
        ref = upcast(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    logits, _ = jax.jit(lm_forward, static_argnames="cfg")(
        jax.tree.map(jnp.asarray, params), jnp.asarray(ids), jnp.asarray(mask), cfg=cfg)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], ref.numpy()[real], atol=1e-4, rtol=0)


def test_safetensors_file_errors(tmp_path):
    bad = tmp_path / "short.safetensors"
    bad.write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a safetensors file"):
        SafetensorsFile(bad)
    bad.write_bytes((7).to_bytes(8, "little") + b"{not js")
    with pytest.raises(ValueError, match=r"not a safetensors file \(bad header\)"):
        SafetensorsFile(bad)
    header = b'{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,6]}}'
    bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 6)
    with pytest.raises(ValueError, match="'w' has a corrupt byte range"):
        SafetensorsFile(bad).get("w")
