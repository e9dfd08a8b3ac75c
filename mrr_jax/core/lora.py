"""LoRA adapters as separate parameter trees (docs/design.md §2), applied at run time or folded.

An adapter never touches the frozen base tree; it is its own pytree with the base's stacked
layout (letters as in ``mrr_jax.core.decoder``, ``r`` the LoRA rank; the shapes come from
``mrr_jax.core.spec``: ``a`` takes the weight's input axes then r, ``b`` r then its output
axes)::

    layers/q    a [L, D, r]      b [L, r, N, H]
    layers/k, v a [L, D, r]      b [L, r, K, H]
    layers/o    a [L, N, H, r]   b [L, r, D]
    layers/gate, up a [L, D, r]  b [L, r, F]
    layers/down a [L, F, r]      b [L, r, D]
    heads       a [E, D, r]      b [E, r]        (exit heads, indexed by layer - start_layer)

``W_eff = W + scale * a @ b`` with ``scale = alpha / rank`` (PEFT's convention), ``a`` initialised
as PEFT does (Kaiming-uniform, bound ``1/sqrt(fan_in)``) and ``b`` zero, so a fresh adapter
changes nothing. Dropout (training only) drops the adapter's input, one independent mask per
projection, as PEFT's per-module ``lora_dropout``. A plan's effective weights are
``base + stage1 + V + H(ratio)``: several adapters are applied together (their deltas add) or
folded once into the base for serving (:func:`fold`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mrr_jax.core import spec

Params = dict
TARGETS = spec.LORA_TARGETS  # q, k, v, o, gate, up, down, heads
LAYER_TARGETS = TARGETS[:-1]


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Shape and behaviour of one adapter (the reference's: r=32, alpha=64, dropout 0.1)."""

    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.1
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        bad = [t for t in self.targets if t not in TARGETS]
        if bad:
            raise ValueError(f"unknown LoRA targets {bad}; choose from {TARGETS}")
        if self.rank < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA rank must be >= 1 and dropout in [0, 1), got rank="
                             f"{self.rank}, dropout={self.dropout}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Adapter:
    """An adapter's arrays (``params``, traced) with its scale and dropout (static)."""

    params: Params
    scale: float = dataclasses.field(metadata={"static": True})
    dropout: float = dataclasses.field(default=0.0, metadata={"static": True})

    @classmethod
    def of(cls, params: Params, cfg: LoraConfig) -> Adapter:
        return cls(params, cfg.scale, cfg.dropout)


def init_lora(key: jax.Array, base: Params, heads: jax.Array, cfg: LoraConfig,
              dtype=jnp.float32) -> Params:
    """A fresh adapter tree for ``base`` (stacked layers) and ``heads`` [E, D]: ``a`` uniform
    in +-1/sqrt(fan_in) (PEFT's Kaiming-uniform with a=sqrt(5)), ``b`` zero."""
    out: Params = {"layers": {}}
    keys = jax.random.split(key, len(TARGETS))
    for k, name in zip(keys, TARGETS):
        if name not in cfg.targets:
            continue
        w = heads if name == "heads" else base["layers"][name]
        a_shape, b_shape = spec.lora_shapes(name, w.shape, cfg.rank)
        bound = 1.0 / math.sqrt(math.prod(a_shape[1:-1]))  # fan-in: the input axes
        a = jax.random.uniform(k, a_shape, dtype, -bound, bound)
        entry = {"a": a, "b": jnp.zeros(b_shape, dtype)}
        if name == "heads":
            out["heads"] = entry
        else:
            out["layers"][name] = entry
    return out


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def delta(x: jax.Array, a: jax.Array, b: jax.Array, spec: str, scale: float,
          rate: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    """``scale * (dropout(x) @ a) @ b`` for the projection ``einsum(spec, x, W)``.

    ``spec`` is the base projection's einsum (e.g. ``"BTNH,NHD->BTD"``); ``a`` carries W's input
    axes then ``r``, ``b`` carries ``r`` then W's output axes."""
    lhs, rest = spec.split(",")
    w_axes, out = rest.split("->")
    contracted = "".join(c for c in w_axes if c in lhs)
    produced = "".join(c for c in w_axes if c not in lhs)
    kept = "".join(c for c in lhs if c not in contracted)
    xr = jnp.einsum(f"{lhs},{contracted}r->{kept}r", _dropout(x, rate, key), a.astype(x.dtype))
    y = jnp.einsum(f"{kept}r,r{produced}->{out}", xr, b.astype(x.dtype))
    return y * jnp.asarray(scale, x.dtype)


def head_scores(feats: jax.Array, heads: jax.Array, adapters: Sequence[Adapter],
                idx: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Exit scores [E, B] (float32) of feats [E, B, D] with heads [E_all, D] rows ``idx`` [E]
    plus every adapter's head delta (dropout on the head input when ``key`` is given)."""
    f32 = feats.astype(jnp.float32)
    scores = jnp.einsum("EBD,ED->EB", f32, heads[idx].astype(jnp.float32))
    for n, ad in enumerate(adapters):
        if "heads" not in ad.params:
            continue
        a, b = ad.params["heads"]["a"][idx], ad.params["heads"]["b"][idx]
        k = None if key is None else jax.random.fold_in(key, n)
        xr = jnp.einsum("EBD,EDr->EBr", _dropout(f32, ad.dropout, k), a.astype(jnp.float32))
        scores = scores + ad.scale * jnp.einsum("EBr,Er->EB", xr, b.astype(jnp.float32))
    return scores


def _delta_weight(entry: Params, n_in: int, scale: float, xp=jnp) -> jax.Array:
    """scale * a @ b as a weight with the base's layout [L_or_E, *in, *out] (``xp``: numpy
    for host arrays, jax.numpy otherwise)."""
    a, b = xp.asarray(entry["a"], xp.float32), xp.asarray(entry["b"], xp.float32)
    lead, r = a.shape[0], a.shape[-1]
    in_shape, out_shape = a.shape[1:1 + n_in], b.shape[2:]
    w = xp.einsum("Lir,Lro->Lio", a.reshape(lead, -1, r), b.reshape(lead, r, -1))
    return scale * w.reshape(lead, *in_shape, *out_shape)


def fold(base: Params, heads: jax.Array, adapters: Sequence[Adapter]
         ) -> tuple[Params, jax.Array]:
    """(base', heads') with every adapter's ``scale * a @ b`` added in float32 and cast back:
    the weights to serve one fixed plan without run-time adapter matmuls. Host (numpy) weights
    are folded on the host and stay there."""
    layers = dict(base["layers"])
    for ad in adapters:
        for name, entry in ad.params.get("layers", {}).items():
            w = layers[name]
            xp = np if isinstance(w, np.ndarray) else jnp
            layers[name] = (w.astype(xp.float32)
                            + _delta_weight(entry, spec.n_in(name), ad.scale, xp)).astype(w.dtype)
        if "heads" in ad.params:
            xp = np if isinstance(heads, np.ndarray) else jnp
            heads = (heads.astype(xp.float32) + _delta_weight(
                ad.params["heads"], spec.n_in("heads"), ad.scale, xp)).astype(heads.dtype)
    return {**base, "layers": layers}, heads
