"""Numerical parity with PyTorch transformers, per family, on tiny random models.

Proves the decoder math and the checkpoint key maps: a random transformers model (built from a
config here, no hub) is saved with ``save_pretrained``, loaded by mrr_jax, and run on a
right-padded batch of uneven lengths; logits and every layer's hidden states must equal
PyTorch's (fp32, eager attention) within 1e-4 at every real token.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from mrr_jax.core.decoder import lm_forward, rms_norm
from mrr_jax.weights.hf import load_hf_dir

COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)

CASES = {
    "llama": (transformers.LlamaConfig, dict(rope_theta=10000.0, tie_word_embeddings=False)),
    "llama_bias_llama3rope": (transformers.LlamaConfig, dict(
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True, head_dim=32,
        rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8})),
    "mistral_sliding": (transformers.MistralConfig, dict(sliding_window=5, head_dim=16)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    "gemma2": (transformers.Gemma2Config, dict(
        head_dim=16, query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=3.0,
        final_logit_softcapping=5.0, hidden_activation="gelu_pytorch_tanh")),
}
LENGTHS = [13, 9, 5]


def _random_model(cls, extra, seed=0):
    torch.manual_seed(seed)
    cfg = cls(**COMMON, **extra)
    cfg._attn_implementation = "eager"
    model = getattr(transformers, cls.__name__.replace("Config", "ForCausalLM"))(cfg).eval()
    with torch.no_grad():  # Spread the weights so that every term matters numerically.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model


def _batch(vocab, seed=1):
    rng = np.random.default_rng(seed)
    t = max(LENGTHS)
    ids = np.zeros((len(LENGTHS), t), np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = rng.integers(3, vocab, n)
        mask[b, :n] = 1
    return ids, mask


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_and_hidden_states_match_transformers(case, tmp_path):
    cls, extra = CASES[case]
    model = _random_model(cls, extra)
    model.save_pretrained(tmp_path)
    ids, mask = _batch(COMMON["vocab_size"])
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    output_hidden_states=True)
    ref_logits = out.logits.numpy()
    ref_hidden = np.stack([h.numpy() for h in out.hidden_states])

    cfg, params = load_hf_dir(tmp_path)
    assert cfg.family == case.split("_")[0]
    params = jax.tree.map(jnp.asarray, params)
    logits, hidden = jax.jit(lm_forward, static_argnames="cfg")(
        params, jnp.asarray(ids), jnp.asarray(mask), cfg=cfg)
    # transformers overwrites hidden_states[-1] with the final-normed output; ours is raw.
    hidden = np.asarray(hidden.at[-1].set(rms_norm(hidden[-1], params["final_norm"], cfg)))
    real = mask.astype(bool)
    assert hidden.shape == ref_hidden.shape
    np.testing.assert_allclose(np.asarray(logits)[real], ref_logits[real], atol=1e-4, rtol=0)
    np.testing.assert_allclose(hidden[:, real], ref_hidden[:, real], atol=1e-4,
                               rtol=0)
