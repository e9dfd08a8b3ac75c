"""Per-family maps from Hugging Face tensor names to mrr_jax's stacked param tree.

Each entry: HF suffix under ``model.layers.{i}.`` -> (our key under ``layers/``, kind). The kind
says how to reshape the HF tensor (``nn.Linear`` stores [out, in]) into our einsum layout; see
``mrr_jax.core.decoder`` for the letters.
"""

from __future__ import annotations

import numpy as np

from mrr_jax.core.config import ModelConfig

_ATTN = {
    "self_attn.q_proj.weight": ("q", "in_heads_q"),
    "self_attn.k_proj.weight": ("k", "in_heads_kv"),
    "self_attn.v_proj.weight": ("v", "in_heads_kv"),
    "self_attn.o_proj.weight": ("o", "heads_out"),
    "mlp.gate_proj.weight": ("gate", "linear"),
    "mlp.up_proj.weight": ("up", "linear"),
    "mlp.down_proj.weight": ("down", "linear"),
    "input_layernorm.weight": ("attn_norm", "vector"),
}
_BIAS_QKV = {
    "self_attn.q_proj.bias": ("q_bias", "bias_q"),
    "self_attn.k_proj.bias": ("k_bias", "bias_kv"),
    "self_attn.v_proj.bias": ("v_bias", "bias_kv"),
}
_BIAS_O = {"self_attn.o_proj.bias": ("o_bias", "vector")}
_BIAS_MLP = {
    "mlp.gate_proj.bias": ("gate_bias", "vector"),
    "mlp.up_proj.bias": ("up_bias", "vector"),
    "mlp.down_proj.bias": ("down_bias", "vector"),
}
_LLAMA_NORMS = {"post_attention_layernorm.weight": ("mlp_norm", "vector")}
_GEMMA2_NORMS = {
    "post_attention_layernorm.weight": ("post_attn_norm", "vector"),
    "pre_feedforward_layernorm.weight": ("mlp_norm", "vector"),
    "post_feedforward_layernorm.weight": ("post_mlp_norm", "vector"),
}

GLOBAL_KEYS = {
    "model.embed_tokens.weight": "embed",
    "model.norm.weight": "final_norm",
    "lm_head.weight": "lm_head",
}


def layer_map(cfg: ModelConfig) -> dict[str, tuple[str, str]]:
    """HF per-layer suffix -> (our key, kind) for this config's family and options."""
    m = dict(_ATTN)
    m.update(_GEMMA2_NORMS if cfg.family == "gemma2" else _LLAMA_NORMS)
    if cfg.attention_bias:
        m.update(_BIAS_QKV)
    if cfg.o_bias:
        m.update(_BIAS_O)
    if cfg.mlp_bias:
        m.update(_BIAS_MLP)
    return m


def hf_shape(kind: str, our_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The HF tensor shape that maps onto a per-layer tensor of ``our_shape``."""
    if kind in ("in_heads_q", "in_heads_kv"):  # ours [D, heads, H] <- HF [heads*H, D]
        d, n, h = our_shape
        return (n * h, d)
    if kind == "heads_out":  # ours [N, H, D] <- HF [D, N*H]
        n, h, d = our_shape
        return (d, n * h)
    if kind == "linear":  # ours [in, out] <- HF [out, in]
        return our_shape[::-1]
    if kind in ("bias_q", "bias_kv"):  # ours [heads, H] <- HF [heads*H]
        return (our_shape[0] * our_shape[1],)
    return our_shape  # vector


def to_ours(kind: str, w: np.ndarray, our_shape: tuple[int, ...]) -> np.ndarray:
    """Reshapes an HF tensor (already shape-checked against ``hf_shape``) into our layout."""
    if kind in ("in_heads_q", "in_heads_kv", "linear", "heads_out"):
        return w.T.reshape(our_shape)
    return w.reshape(our_shape)


def from_ours(kind: str, w: np.ndarray) -> np.ndarray:
    """Inverse of ``to_ours`` (used to export HF-layout checkpoints)."""
    if kind in ("in_heads_q", "in_heads_kv"):
        d = w.shape[0]
        return w.reshape(d, -1).T
    if kind == "heads_out":
        return w.reshape(-1, w.shape[-1]).T
    if kind == "linear":
        return w.T
    return w.reshape(-1)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer shapes (without the leading L axis) of every ``layers/`` key."""
    d, f, n, k, h = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                     cfg.num_kv_heads, cfg.head_dim)
    shapes = {
        "q": (d, n, h), "k": (d, k, h), "v": (d, k, h), "o": (n, h, d),
        "gate": (d, f), "up": (d, f), "down": (f, d),
        "attn_norm": (d,), "mlp_norm": (d,), "post_attn_norm": (d,), "post_mlp_norm": (d,),
        "q_bias": (n, h), "k_bias": (k, h), "v_bias": (k, h), "o_bias": (d,),
        "gate_bias": (f,), "up_bias": (f,), "down_bias": (d,),
    }
    return {ours: shapes[ours] for ours, _ in layer_map(cfg).values()}
