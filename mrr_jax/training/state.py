"""The trainable state: fresh adapters per role and their optimizer state, sharded over the
mesh; host copies of it, and the same adapters as inference sees them or as saved folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mrr_jax.core.backbone import Backbone
from mrr_jax.core.lora import Adapter, LoraConfig, init_lora
from mrr_jax.inference.adapters import PlanAdapter
from mrr_jax.runtime import sharding
from mrr_jax.weights.adapters import AdapterRole, save_adapter


def lora_config(c) -> LoraConfig:
    """The config's ``lora.*`` as a LoraConfig."""
    return LoraConfig(rank=c.lora.rank, alpha=c.lora.alpha, dropout=c.lora.dropout,
                      targets=tuple(c.lora.targets))


def init_state(key: jax.Array, backbone: Backbone, roles: Sequence[AdapterRole],
               lcfg: LoraConfig, optimizer, mesh) -> tuple[dict, dict]:
    """Fresh adapters ``{str(role): tree}`` for ``backbone`` and their optimizer state, sharded
    over ``mesh``. Returns (state, state shardings); state is ``{"trainable", "opt_state"}``,
    the tree a checkpoint holds."""
    keys = jax.random.split(key, len(roles))
    trainable = {str(role): init_lora(k, backbone.params, backbone.heads, lcfg)
                 for role, k in zip(roles, keys)}
    state = {"trainable": trainable, "opt_state": optimizer.init(trainable)}
    state_sh = sharding.tree_shardings(state, mesh)
    return sharding.put(state, state_sh), state_sh


def to_host(tree):
    """Numpy copies of (possibly multi-host sharded) arrays, the same on every process."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def plan_adapters(trees: dict[str, Any], lcfg: LoraConfig) -> tuple[PlanAdapter, ...]:
    """Trainable trees ``{role name: tree}`` as inference adapters (no dropout)."""
    return tuple(PlanAdapter(Adapter(tree, lcfg.scale, 0.0), AdapterRole.parse(name))
                 for name, tree in trees.items())


def adapter_folder(workdir: str | Path, role: AdapterRole) -> Path:
    """``<workdir>/adapters/<role>``: where a training run saves its adapter of ``role``."""
    return Path(workdir) / "adapters" / str(role)


def save_adapters(workdir: Path, trees: dict[str, Any], lcfg: LoraConfig, backbone: Backbone,
                  extra: dict[str, Any]) -> list[str]:
    """Writes each host tree ``{role name: tree}`` to its :func:`adapter_folder` (loadable
    with ``Reranker.from_pretrained(..., adapters=[...])``); returns the folders."""
    out = []
    for name, tree in trees.items():
        role = AdapterRole.parse(name)
        out.append(str(save_adapter(adapter_folder(workdir, role), tree, lcfg, backbone.cfg,
                                    backbone.start_layer, role=role, extra=extra)))
    return out
