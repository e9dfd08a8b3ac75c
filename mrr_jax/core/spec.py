"""The parameter spec: every weight of the model, written once.

For each weight this module says its tree key, its logical axes (one name per axis), whether
it is stacked (per layer: a leading ``layers`` axis L; exit heads: a leading ``exits`` axis E),
how many of its leading axes are the input of its projection (the rest are the output), its
init, the config flag under which it exists and its Hugging Face tensor name. Everything that
needs the layout is derived from here:

- ``core.decoder.DecoderLayer`` declares one layer's parameters (:func:`layer_weights`,
  :func:`shape`, :func:`jax_init`);
- ``core.lora`` takes LoRA factor shapes (:func:`lora_shapes`): ``a`` [stack, *in, r],
  ``b`` [stack, r, *out], and a weight's input axes (:func:`n_in`);
- ``runtime.sharding`` maps logical axes to mesh axes with its one rule table; the logical
  axes of any array of a base / heads / LoRA / optimizer tree come from :func:`logical_axes`
  (LoRA factors follow their base weight), installed here at import;
- ``weights.keymaps`` builds its Hugging Face maps and shapes from ``hf`` names; the reshape
  between our einsum layout [*in, *out] and HF's ``nn.Linear`` [out, in] follows from ``n_in``;
- :func:`random_params` is the random init of a fresh model (host numpy).

Logical axes (einsum letters of ``core.decoder``): ``vocab`` V, ``embed`` D, ``norm`` D of a
norm scale (never split), ``heads`` N, ``kv_heads`` K, ``head_dim`` H, ``mlp`` F, ``layers``
L, ``exits`` E, ``rank`` r.

To add a weight, append one :class:`Weight` to ``LAYER`` (or ``GLOBAL``) with its axes,
``n_in``, init, ``when`` (a boolean ``ModelConfig`` field, e.g. a new ``qk_norm``) and HF name;
loading, export, sharding, LoRA and random init follow. A bias named ``<projection>_bias`` is
all it takes (``DecoderLayer.proj`` adds any bias present); another weight (a new norm) is
also used in ``DecoderLayer``. A family whose checkpoint names a weight differently lists its
name in that weight's ``hf_by_family`` (as Gemma2's ``pre_feedforward_layernorm``); a new
family sets its flags in ``ModelConfig.from_hf``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mrr_jax.core.config import ModelConfig
from mrr_jax.runtime import sharding

# Logical axis -> the ModelConfig field that sizes it.
SIZES = {"vocab": "vocab_size", "embed": "hidden_size", "norm": "hidden_size",
         "heads": "num_heads", "kv_heads": "num_kv_heads", "head_dim": "head_dim",
         "mlp": "intermediate_size", "layers": "num_layers"}
INITS = ("fan_in", "normal", "ones", "zeros", "norm")


@dataclasses.dataclass(frozen=True)
class Weight:
    """One weight. ``axes``: its logical axes without the stacking axis; ``stack``: ``layers``,
    ``exits`` or None (a global); ``n_in``: leading input axes of a projection (0: not a
    projection); ``init``: ``fan_in`` (normal / sqrt(fan-in), the fan-in being the input
    axes, or the last axis when ``n_in`` is 0), ``normal`` (standard normal), ``ones``,
    ``zeros`` or ``norm`` (a norm scale: ones, zeros where the norm scales by 1 + w);
    ``when``: the boolean ``ModelConfig`` field it exists under (``!field``: when false; ""
    always); ``hf``: the HF tensor name (per layer: under ``model.layers.{i}.``)."""

    name: str
    axes: tuple[str, ...]
    n_in: int = 0
    init: str = "fan_in"
    stack: str | None = "layers"
    when: str = ""
    hf: str = ""
    hf_by_family: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.init not in INITS or not 0 <= self.n_in <= len(self.axes):
            raise ValueError(f"bad weight spec {self}")

    def exists(self, cfg: ModelConfig) -> bool:
        if not self.when:
            return True
        negate = self.when.startswith("!")
        return bool(getattr(cfg, self.when.lstrip("!"))) != negate

    def hf_name(self, cfg: ModelConfig) -> str:
        return dict(self.hf_by_family).get(cfg.family, self.hf)


def _proj(name: str, axes: tuple[str, ...], n_in: int, module: str) -> Weight:
    return Weight(name, axes, n_in, hf=f"{module}.weight")


def _bias(name: str, axes: tuple[str, ...], when: str, module: str) -> Weight:
    return Weight(name, axes, init="zeros", when=when, hf=f"{module}.bias")


def _norm(name: str, hf: str, when: str = "", **kw) -> Weight:
    return Weight(name, ("norm",), init="norm", when=when, hf=hf, **kw)


# One decoder layer, stacked on a leading L axis. The projections come first, in this order:
# random_params draws them in it (the tiny random model of configs/tiny.py depends on it).
LAYER: tuple[Weight, ...] = (
    _proj("q", ("embed", "heads", "head_dim"), 1, "self_attn.q_proj"),
    _proj("k", ("embed", "kv_heads", "head_dim"), 1, "self_attn.k_proj"),
    _proj("v", ("embed", "kv_heads", "head_dim"), 1, "self_attn.v_proj"),
    _proj("o", ("heads", "head_dim", "embed"), 2, "self_attn.o_proj"),
    _proj("gate", ("embed", "mlp"), 1, "mlp.gate_proj"),
    _proj("up", ("embed", "mlp"), 1, "mlp.up_proj"),
    _proj("down", ("mlp", "embed"), 1, "mlp.down_proj"),
    _norm("attn_norm", "input_layernorm.weight"),
    _norm("mlp_norm", "post_attention_layernorm.weight",
          hf_by_family=(("gemma2", "pre_feedforward_layernorm.weight"),)),
    _norm("post_attn_norm", "post_attention_layernorm.weight", "post_norms"),
    _norm("post_mlp_norm", "post_feedforward_layernorm.weight", "post_norms"),
    _bias("q_bias", ("heads", "head_dim"), "attention_bias", "self_attn.q_proj"),
    _bias("k_bias", ("kv_heads", "head_dim"), "attention_bias", "self_attn.k_proj"),
    _bias("v_bias", ("kv_heads", "head_dim"), "attention_bias", "self_attn.v_proj"),
    _bias("o_bias", ("embed",), "o_bias", "self_attn.o_proj"),
    _bias("gate_bias", ("mlp",), "mlp_bias", "mlp.gate_proj"),
    _bias("up_bias", ("mlp",), "mlp_bias", "mlp.up_proj"),
    _bias("down_bias", ("embed",), "mlp_bias", "mlp.down_proj"),
)
# Top-level weights of the base tree (``lm_head`` only when not tied to ``embed``).
GLOBAL: tuple[Weight, ...] = (
    Weight("embed", ("vocab", "embed"), init="normal", stack=None, hf="model.embed_tokens.weight"),
    Weight("lm_head", ("vocab", "embed"), stack=None, when="!tie_word_embeddings",
           hf="lm_head.weight"),
    _norm("final_norm", "model.norm.weight", stack=None),
)
# The exit heads [E, D]: a tree of their own, started from the LM head's "Yes" row
# (core.backbone.init_heads), so ``random_params`` does not make them.
HEADS = Weight("heads", ("embed",), 1, init="zeros", stack="exits")

BY_NAME = {w.name: w for w in (*LAYER, *GLOBAL, HEADS)}
# The weights a LoRA adapter may target, in this order (``init_lora`` splits its key by it).
LORA_TARGETS = (*(w.name for w in LAYER if w.n_in), HEADS.name)


def layer_weights(cfg: ModelConfig) -> tuple[Weight, ...]:
    """The per-layer weights this config has."""
    return tuple(w for w in LAYER if w.exists(cfg))


def global_weights(cfg: ModelConfig) -> tuple[Weight, ...]:
    """The top-level weights of this config's base tree."""
    return tuple(w for w in GLOBAL if w.exists(cfg))


def shape(w: Weight, cfg: ModelConfig) -> tuple[int, ...]:
    """The shape of one layer's (one exit's) slice of ``w``, or of a global weight."""
    return tuple(int(getattr(cfg, SIZES[a])) for a in w.axes)


def n_in(name: str) -> int:
    """Number of leading input axes of projection ``name`` (after its stacking axis)."""
    return BY_NAME[name].n_in


def io_shapes(name: str, cfg: ModelConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input axes, output axes) of one slice of projection ``name``."""
    s = shape(BY_NAME[name], cfg)
    return s[:n_in(name)], s[n_in(name):]


def lora_shapes(name: str, base_shape: Sequence[int], rank: int
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of the LoRA factors of target ``name`` whose stacked base weight has shape
    ``base_shape`` [stack, *in, *out]: a [stack, *in, r], b [stack, r, *out] (``stack``: L for
    layer weights, E for the heads)."""
    split = 1 + n_in(name)
    base_shape = tuple(int(x) for x in base_shape)
    return (*base_shape[:split], rank), (base_shape[0], rank, *base_shape[split:])


def logical_axes(path: Sequence[str], ndim: int) -> tuple[str | None, ...]:
    """Logical axes of the array at ``path`` (its string keys) in a base, heads, LoRA or
    optimizer tree: the weight named by the path's last key, a LoRA factor (``.../<target>/a``
    or ``/b``) the axes of its base weight's input / output plus ``rank``. Unknown arrays,
    and arrays whose rank does not match, get ``None`` axes (replicated)."""
    path = tuple(path)
    axes: tuple[str | None, ...] = ()
    if len(path) >= 2 and path[-1] in ("a", "b") and path[-2] in LORA_TARGETS:
        w = BY_NAME[path[-2]]
        part = w.axes[:w.n_in] + ("rank",) if path[-1] == "a" else ("rank",) + w.axes[w.n_in:]
        axes = (w.stack, *part)
    elif path and path[-1] in BY_NAME:
        w = BY_NAME[path[-1]]
        if (w.stack == "layers") == ("layers" in path):  # layer weights live under layers/
            axes = (w.stack, *w.axes) if w.stack else w.axes
    return axes if len(axes) == ndim else (None,) * ndim


def _fan_in(w: Weight, s: tuple[int, ...]) -> int:
    return math.prod(s[:w.n_in]) if w.n_in else s[-1]


def _numpy_init(w: Weight, cfg: ModelConfig, s: tuple[int, ...], rng: np.random.Generator,
                dtype) -> np.ndarray:
    """One weight's random value, host numpy (``s``: its shape, stacked or not)."""
    if w.init == "fan_in":
        lead = 1 if w.stack else 0
        return (rng.standard_normal(s) / math.sqrt(_fan_in(w, s[lead:]))).astype(dtype)
    if w.init == "normal":
        return rng.standard_normal(s).astype(dtype)
    one = w.init == "ones" or (w.init == "norm" and not cfg.norm_plus_one)
    return (np.ones if one else np.zeros)(s, dtype)


def jax_init(w: Weight, cfg: ModelConfig):
    """A flax initializer ``(key, shape, dtype=float32) -> array`` for one slice of ``w``."""
    def init(key: jax.Array, s: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        if w.init == "fan_in":
            return jax.random.normal(key, s, dtype) / math.sqrt(_fan_in(w, s))
        if w.init == "normal":
            return jax.random.normal(key, s, dtype)
        one = w.init == "ones" or (w.init == "norm" and not cfg.norm_plus_one)
        return (jnp.ones if one else jnp.zeros)(s, dtype)

    return init


def param_shapes(cfg: ModelConfig) -> dict:
    """Shapes of the whole base tree: globals and ``layers`` (stacked, with L)."""
    out: dict = {w.name: shape(w, cfg) for w in global_weights(cfg)}
    out["layers"] = {w.name: (cfg.num_layers, *shape(w, cfg)) for w in layer_weights(cfg)}
    return out


def random_params(cfg: ModelConfig, seed: int = 0, dtype=np.float32) -> dict:
    """A random base tree (host numpy) with the spec's inits: projections normal / sqrt(fan-in),
    embeddings standard normal, norms the identity, biases zero. Draws the layer weights
    first, in ``LAYER`` order, then the globals, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    shapes = param_shapes(cfg)
    layers = {w.name: _numpy_init(w, cfg, shapes["layers"][w.name], rng, dtype)
              for w in layer_weights(cfg)}
    out = {w.name: _numpy_init(w, cfg, shapes[w.name], rng, dtype) for w in global_weights(cfg)}
    return {**out, "layers": layers}


# runtime.sharding (a lower layer, which names no weight) takes every array's logical axes
# from here.
sharding.set_logical_axes(logical_axes)
