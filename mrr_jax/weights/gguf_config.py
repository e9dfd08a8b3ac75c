"""GGUF metadata and tensor names -> a Hugging Face Llama ``config.json`` and its tensor names.

Pure functions (no file needed): ``hf_config_from_metadata`` (metadata -> ``config.json``
dict), ``hf_tensor_name`` (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``),
``required_tensor_names`` and ``unpermute_qk`` (undo llama.cpp's rotary row interleaving).
:mod:`mrr_jax.weights.gguf` reads the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama",)

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_TENSORS = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


class GGUFError(ValueError):
    """A GGUF file that is unreadable, incomplete or describes an unsupported model."""


def require_key(metadata: Mapping[str, Any], key: str) -> Any:
    if key not in metadata:
        raise KeyError(f"GGUF metadata key {key!r} is missing (required to build the config)")
    return metadata[key]


def hf_config_from_metadata(
    metadata: Mapping[str, Any], tensor_names: Iterable[str] = ()
) -> dict[str, Any]:
    """A transformers ``config.json`` dict for the model a GGUF's metadata describes.

    ``metadata`` maps GGUF keys (``general.architecture``, ``llama.block_count``, ...) to plain
    Python values; ``tensor_names`` are the GGUF tensor names (used only to decide whether the
    output projection is tied to the embedding: it is when there is no ``output.weight``).

    Raises ``ValueError`` for an unsupported architecture or rope variant and ``KeyError`` for a
    missing required key.
    """
    arch = require_key(metadata, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(
            f"unsupported GGUF architecture {arch!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def get(key: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    def req(key: str) -> Any:
        return require_key(metadata, f"{arch}.{key}")

    if get("expert_count", 0):
        raise GGUFError(f"{arch} GGUF with experts (mixture of experts) is not supported")
    scaling = get("rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise GGUFError(f"rope scaling {scaling!r} is not supported (only the default rope)")

    hidden = int(req("embedding_length"))
    n_head = int(req("attention.head_count"))
    n_kv = int(get("attention.head_count_kv", n_head))
    head_dim = int(get("attention.key_length", hidden // n_head))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise GGUFError("attention.key_length != attention.value_length is not supported")
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise GGUFError(f"partial rotary embedding (rope dim {rope_dim} != head_dim {head_dim})")

    vocab_size = get("vocab_size")
    if vocab_size is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise KeyError(f"GGUF metadata key '{arch}.vocab_size' is missing (and no token list)")
        vocab_size = len(tokens)

    rope_theta = float(get("rope.freq_base", 10000.0))
    names = set(tensor_names)
    tied = "output.weight" not in names
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(vocab_size),
        "hidden_size": hidden,
        "intermediate_size": int(req("feed_forward_length")),
        "num_hidden_layers": int(req("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(req("context_length")),
        "rms_norm_eps": float(req("attention.layer_norm_rms_epsilon")),
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def hf_tensor_name(gguf_name: str) -> str:
    """The Hugging Face Llama name of a GGUF tensor (``blk.3.attn_q.weight`` ->
    ``model.layers.3.self_attn.q_proj.weight``); ``KeyError`` for an unknown name."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    m = _LAYER_RE.match(gguf_name)
    if m and m.group(2) in _LAYER_TENSORS:
        return f"model.layers.{m.group(1)}.{_LAYER_TENSORS[m.group(2)]}"
    raise KeyError(f"GGUF tensor {gguf_name!r} has no Hugging Face Llama counterpart")


def required_tensor_names(num_layers: int, tied: bool) -> list[str]:
    """The GGUF tensor names a llama model with ``num_layers`` blocks must contain."""
    names = ["token_embd.weight", "output_norm.weight"]
    if not tied:
        names.append("output.weight")
    names += [f"blk.{i}.{suffix}" for i in range(num_layers) for suffix in _LAYER_TENSORS]
    return names


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a q/k projection.

    ``w``: (n_head * head_dim, in_features) as stored in GGUF (rows interleaved per head);
    returns the same shape in Hugging Face's half-split rotary order.
    """
    rows, cols = w.shape
    if rows % (2 * n_head):
        raise GGUFError(f"cannot un-permute a ({rows}, {cols}) projection over {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
