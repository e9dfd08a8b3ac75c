"""Backbone configuration: one frozen, hashable dataclass for the four supported families.

Read from a Hugging Face ``config.json`` dict (``ModelConfig.from_hf``); transformers v5 keeps
``rope_theta`` under ``rope_parameters`` and older versions at the top level -- both are accepted.
The dataclass is hashable so it can be a static argument of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "gemma2")

# architectures[0] -> family, for configs whose model_type is missing or unusual.
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Gemma2ForCausalLM": "gemma2",
}
_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only backbone hyper-parameters (letters: D model, N query heads, K kv heads,
    H head dim, F MLP, V vocab, L layers)."""

    family: str
    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    rms_norm_eps: float
    rope_theta: float
    # Hashable RoPE scaling: (("rope_type", "llama3"), ("factor", 8.0), ...) or ().
    rope_scaling: tuple[tuple[str, Any], ...] = ()
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v biases (Qwen2; optional for Llama)
    o_bias: bool = False  # o_proj bias (Llama attention_bias=True)
    mlp_bias: bool = False
    hidden_act: str = "silu"
    sliding_window: int | None = None
    sliding_layers: tuple[bool, ...] = ()  # per layer: uses the sliding window
    # Gemma2 specifics.
    norm_plus_one: bool = False  # RMSNorm scales by (1 + w)
    post_norms: bool = False  # post-attention and post-MLP norms
    embed_scale: float | None = None  # embeddings multiplied by sqrt(D)
    query_scale: float = 0.0  # attention logit scale; 0 -> H ** -0.5
    attn_softcap: float | None = None
    final_softcap: float | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.family not in SUPPORTED_FAMILIES:
            raise ValueError(f"unsupported family {self.family!r}; supported: {SUPPORTED_FAMILIES}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.sliding_layers and len(self.sliding_layers) != self.num_layers:
            raise ValueError("sliding_layers must have one entry per layer")

    @property
    def attn_scale(self) -> float:
        return self.query_scale or self.head_dim**-0.5

    @property
    def any_sliding(self) -> bool:
        return self.sliding_window is not None and any(self.sliding_layers)

    @classmethod
    def from_hf(cls, d: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Builds the config from a Hugging Face ``config.json`` dict; ``source`` names the file in
        error messages."""
        family = d.get("model_type")
        if family not in SUPPORTED_FAMILIES:
            archs = d.get("architectures") or []
            family = _ARCHITECTURES.get(archs[0]) if archs else None
        if family is None:
            raise ValueError(
                f"{source}: unsupported architecture (model_type={d.get('model_type')!r}, "
                f"architectures={d.get('architectures')!r}); supported model types: "
                f"{', '.join(SUPPORTED_FAMILIES)}"
            )

        def need(key: str) -> Any:
            if d.get(key) is None:
                raise ValueError(f"{source}: required field {key!r} is missing")
            return d[key]

        n_layers = int(need("num_hidden_layers"))
        n_heads = int(need("num_attention_heads"))
        hidden = int(need("hidden_size"))
        head_dim = int(d.get("head_dim") or hidden // n_heads)
        theta, scaling = _rope(d, source)
        act = d.get("hidden_activation") or d.get("hidden_act") or "silu"
        window, sliding = _sliding(d, family, n_layers)

        def first_id(key: str) -> int | None:
            v = d.get(key)
            return int(v[0]) if isinstance(v, list) and v else (None if v is None else int(v))

        gemma = family == "gemma2"
        return cls(
            family=family,
            vocab_size=int(need("vocab_size")),
            hidden_size=hidden,
            intermediate_size=int(need("intermediate_size")),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=int(d.get("num_key_value_heads") or n_heads),
            head_dim=head_dim,
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position_embeddings=int(d.get("max_position_embeddings") or 4096),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", gemma)),
            attention_bias=family == "qwen2" or bool(d.get("attention_bias", False)),
            o_bias=family != "qwen2" and bool(d.get("attention_bias", False)),
            mlp_bias=bool(d.get("mlp_bias", False)),
            hidden_act=act,
            sliding_window=window,
            sliding_layers=sliding,
            norm_plus_one=gemma,
            post_norms=gemma,
            embed_scale=math.sqrt(hidden) if gemma else None,
            query_scale=float(d["query_pre_attn_scalar"]) ** -0.5 if gemma else 0.0,
            attn_softcap=d.get("attn_logit_softcapping") if gemma else None,
            final_softcap=d.get("final_logit_softcapping") if gemma else None,
            bos_token_id=first_id("bos_token_id"),
            eos_token_id=first_id("eos_token_id"),
            pad_token_id=first_id("pad_token_id"),
        )


def _rope(d: dict[str, Any], source: str) -> tuple[float, tuple[tuple[str, Any], ...]]:
    """(rope_theta, hashable rope_scaling) of a config.json dict (transformers v5 keeps them
    under ``rope_parameters``, older versions at the top level / under ``rope_scaling``)."""
    rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    theta = d.get("rope_theta", rope.get("rope_theta"))
    if theta is None:
        theta = 10000.0
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ValueError(
            f"{source}: unsupported RoPE type {rope_type!r}; supported: {_ROPE_TYPES}"
        )
    scaling: tuple[tuple[str, Any], ...] = ()
    if rope_type != "default":
        keep = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
        keep["rope_type"] = rope_type
        scaling = tuple(sorted(keep.items()))
    return float(theta), scaling


def _sliding(d: dict[str, Any], family: str, n_layers: int
             ) -> tuple[int | None, tuple[bool, ...]]:
    """(sliding window or None, per-layer sliding flags) of a config.json dict."""
    window = d.get("sliding_window")
    layer_types = d.get("layer_types")
    if layer_types:
        sliding = tuple(t == "sliding_attention" for t in layer_types[:n_layers])
    elif family == "gemma2":
        sliding = tuple(i % 2 == 0 for i in range(n_layers))
    elif family == "qwen2":
        use = bool(d.get("use_sliding_window", False))
        first = int(d.get("max_window_layers") or 0)
        sliding = tuple(use and i >= first for i in range(n_layers))
    else:  # Llama has none; Mistral slides on every layer when a window is set.
        sliding = tuple(family == "mistral" for _ in range(n_layers))
    if window is None or not any(sliding):
        return None, tuple(False for _ in range(n_layers))
    return int(window), sliding
