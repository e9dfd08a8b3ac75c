"""Hugging Face tensor names and layouts of mrr_jax's stacked param tree, from the parameter
spec (``mrr_jax.core.spec``: each weight's HF name, shape and input axes).

A per-layer map entry is HF suffix under ``model.layers.{i}.`` -> (our key under ``layers/``,
``n_in``). ``n_in`` says how to reshape: HF's ``nn.Linear`` stores [out, in] with the head axes
flattened (``heads * head_dim``, in HF's own rotate-half order), ours is the einsum layout
[*in, *out] with its first ``n_in`` axes the input; ``n_in = 0`` is a vector (norm scale,
bias), flattened in HF.
"""

from __future__ import annotations

import math

import numpy as np

from mrr_jax.core import spec
from mrr_jax.core.config import ModelConfig

# HF name -> our top-level key (lm_head is read only when not tied to the embedding).
GLOBAL_KEYS = {w.hf: w.name for w in spec.GLOBAL}


def layer_map(cfg: ModelConfig) -> dict[str, tuple[str, int]]:
    """HF per-layer suffix -> (our key, n_in) for this config's family and options."""
    return {w.hf_name(cfg): (w.name, w.n_in) for w in spec.layer_weights(cfg)}


def hf_shape(n_in: int, our_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The HF tensor shape that maps onto a tensor of ``our_shape`` (its first ``n_in`` axes
    the input): [prod(out), prod(in)], or flat for a vector."""
    if n_in:
        return (math.prod(our_shape[n_in:]), math.prod(our_shape[:n_in]))
    return (math.prod(our_shape),)


def to_ours(n_in: int, w: np.ndarray, our_shape: tuple[int, ...]) -> np.ndarray:
    """Reshapes an HF tensor (already shape-checked against ``hf_shape``) into our layout."""
    return (w.T if n_in else w).reshape(our_shape)


def from_ours(n_in: int, w: np.ndarray) -> np.ndarray:
    """Inverse of ``to_ours`` (used to export HF-layout checkpoints)."""
    if n_in:
        return w.reshape(math.prod(w.shape[:n_in]), -1).T
    return w.reshape(-1)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer shapes (without the leading L axis) of every ``layers/`` key."""
    return {w.name: spec.shape(w, cfg) for w in spec.layer_weights(cfg)}


def global_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the top-level weights this config has (``embed``, ``final_norm``, and
    ``lm_head`` when untied)."""
    return {w.name: spec.shape(w, cfg) for w in spec.global_weights(cfg)}
