"""The frozen backbone that training and inference share: decoder weights and exit heads.

A :class:`Backbone` is immutable: placing it on a device, sharding it over a mesh or folding
adapters into it returns a new one. It is a pytree whose leaves are ``params`` (the stacked
base tree of ``mrr_jax.core.decoder``) and ``heads`` [E, D] (one exit head per layer
``start_layer..L``, indexed by layer - start_layer); ``cfg``, ``start_layer`` and ``dtype`` are
static.

Where the arrays live is the caller's choice: :meth:`Backbone.create` with ``place=True`` puts
them on the default device (params in the compute dtype, heads float32); ``place=False`` keeps
them in host memory (numpy, the same dtypes) for a caller that shards them itself, so a 7B base
never lands whole on one device (training: :meth:`Backbone.sharded`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mrr_jax.core.config import ModelConfig
from mrr_jax.core.decoder import Params, lm_head_weight
from mrr_jax.core.lora import Adapter, fold
from mrr_jax.runtime import sharding

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def init_heads(params: Params, yes_token_id: int, num_exits: int,
               no_token_id: int | None = None) -> np.ndarray:
    """Exit heads [E, D], every one the LM-head row of the "Yes" token (the reference), or,
    given ``no_token_id``, the "Yes" row minus the "No" row: the score is then the log-odds
    of "Yes" against "No" at the scoring token (docs/method.md §12)."""
    lm_head = lm_head_weight(params)
    row = np.asarray(lm_head[yes_token_id], np.float32)
    if no_token_id is not None:
        row = row - np.asarray(lm_head[no_token_id], np.float32)
    return np.tile(row[None], (num_exits, 1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)  # identity, not a comparison of arrays
class Backbone:
    """Decoder weights ``params`` and exit heads ``heads`` [E, D] (E = L - start_layer + 1)
    of a model ``cfg``; ``dtype`` names the compute dtype (``float32`` | ``bfloat16``).

    Build one with :meth:`create` (checked and converted); the constructor itself takes the
    arrays as they are (it is also the pytree unflattening)."""

    cfg: ModelConfig = dataclasses.field(metadata=dict(static=True))
    params: Params
    heads: Any  # [E, D] float32: np.ndarray or jax.Array
    start_layer: int = dataclasses.field(metadata=dict(static=True))
    dtype: str = dataclasses.field(default="float32", metadata=dict(static=True))

    @classmethod
    def create(cls, cfg: ModelConfig, params: Params, heads, *, start_layer: int = 4,
               dtype: str = "float32", place: bool = True) -> Backbone:
        """A checked backbone: params cast to ``dtype`` and heads to float32, on the default
        device (``place``) or in host memory (numpy)."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        if not 1 <= start_layer <= cfg.num_layers:
            raise ValueError(f"start_layer {start_layer} outside 1..{cfg.num_layers}")
        n_exits = cfg.num_layers - start_layer + 1
        if tuple(heads.shape) != (n_exits, cfg.hidden_size):
            raise ValueError(f"heads have shape {tuple(heads.shape)}, expected "
                             f"{(n_exits, cfg.hidden_size)} (one per layer {start_layer}.."
                             f"{cfg.num_layers})")
        compute = DTYPES[dtype]
        if place:
            params = jax.tree.map(lambda a: jnp.asarray(a, compute), params)
            heads = jnp.asarray(heads, jnp.float32)
        else:
            np_dtype = np.dtype(compute)
            params = jax.tree.map(lambda a: np.asarray(a).astype(np_dtype, copy=False), params)
            heads = np.asarray(heads, np.float32)
        return cls(cfg, params, heads, start_layer, dtype)

    @property
    def compute_dtype(self):
        """The jax dtype the forward computes in (``jnp.float32`` or ``jnp.bfloat16``)."""
        return DTYPES[self.dtype]

    @property
    def num_exits(self) -> int:
        """E: exits ``start_layer..L``."""
        return self.cfg.num_layers - self.start_layer + 1

    def place(self) -> Backbone:
        """The same backbone with its arrays on the default device."""
        return dataclasses.replace(self, params=jax.tree.map(jnp.asarray, self.params),
                                   heads=jnp.asarray(self.heads))

    def sharded(self, mesh) -> Backbone:
        """The same backbone sharded over ``mesh`` (``mrr_jax.runtime.sharding`` rules: the
        base over fsdp x tensor, the heads as a ``heads`` leaf)."""
        params = sharding.put(self.params, sharding.tree_shardings(self.params, mesh))
        heads = jax.device_put(self.heads,
                               sharding.tree_shardings({"heads": self.heads}, mesh)["heads"])
        return dataclasses.replace(self, params=params, heads=heads)

    def folded(self, adapters: Sequence[Adapter]) -> Backbone:
        """The backbone with ``adapters`` folded into its weights (host arrays stay on the
        host; see ``mrr_jax.core.lora.fold``)."""
        if not adapters:
            return self
        params, heads = fold(self.params, self.heads, adapters)
        return dataclasses.replace(self, params=params, heads=heads)
