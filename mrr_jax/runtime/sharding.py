"""The one place that talks to jax's sharding API: the (data, fsdp, tensor) mesh and the
``NamedSharding`` of every array the trainer touches.

Rules, by the logical axes of each weight (letters as in ``mrr_jax.core.decoder``): the model axis D
is split over ``fsdp``, heads (N, K) and the MLP axis F over ``tensor``; layer, head-dim, rank
and exit axes are replicated. An axis that does not divide evenly stays replicated. Batches
split their leading (row) axis over ``data`` x ``fsdp``. LoRA trees follow their base weight's
axes (``a``: input axes + rank, ``b``: rank + output axes), so optimizer state is sharded the
same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")
_LOGICAL = {"D": "fsdp", "N": "tensor", "K": "tensor", "F": "tensor"}
# Logical axes of base weights (after the stacked layer axis L) and LoRA in/out axes.
_BASE = {"q": "DNH", "k": "DKH", "v": "DKH", "o": "NHD", "gate": "DF", "up": "DF", "down": "FD",
         "q_bias": "NH", "k_bias": "KH", "v_bias": "KH", "o_bias": "D", "gate_bias": "F",
         "up_bias": "F", "down_bias": "D"}
_IN = {"q": "D", "k": "D", "v": "D", "o": "NH", "gate": "D", "up": "D", "down": "F",
       "heads": "D"}


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: list | None = None) -> Mesh:
    """A mesh of all (or the given) devices; one of the sizes may be -1 (the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError("at most one mesh axis may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not split into mesh {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs "
                         f"{math.prod(sizes)} devices, there are {len(devices)}")
    arr = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(arr, AXES, axis_types=(AxisType.Auto,) * 3)


def _spec(letters: str, shape: tuple[int, ...], mesh: Mesh) -> P:
    axes = []
    for letter, size in zip(letters, shape):
        name = _LOGICAL.get(letter)
        ok = name is not None and size % mesh.shape[name] == 0 and mesh.shape[name] > 1
        axes.append(name if ok else None)
    return P(*axes)


def _letters(path: tuple[str, ...], ndim: int) -> str:
    """Logical letters of the array at ``path`` in a base or LoRA tree ('.' = replicated)."""
    names = [p for p in path if p not in ("layers",)]
    if names and names[-1] in ("a", "b"):  # a LoRA factor
        target = names[-2]
        lead = "E" if target == "heads" else "L"
        ins = _IN[target]
        outs = "" if target == "heads" else _BASE[target][len(ins):]
        return lead + ins + "r" if names[-1] == "a" else lead + "r" + outs
    if "layers" in path:
        return "L" + _BASE.get(names[-1], "." * (ndim - 1))
    if names[-1] in ("embed", "lm_head"):
        return "VD"
    if names[-1] == "heads":
        return "ED"
    return "." * ndim


def tree_shardings(tree, mesh: Mesh):
    """A NamedSharding for every array of a base / heads / LoRA / optimizer pytree."""
    def one(path, leaf):
        keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        shape = np.shape(leaf)
        letters = _letters(keys, len(shape)) if keys else "." * len(shape)
        if len(letters) != len(shape):
            letters = "." * len(shape)
        return NamedSharding(mesh, _spec(letters, shape, mesh))

    return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh, ndim: int, accum_axis: bool = False) -> NamedSharding:
    """Rows over data x fsdp; with ``accum_axis`` the leading axis is the micro-batch index."""
    lead = (None,) if accum_axis else ()
    return NamedSharding(mesh, P(*lead, BATCH, *([None] * (ndim - 1 - len(lead)))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put(tree, shardings):
    """device_put of a pytree onto matching shardings (host numpy or arrays)."""
    return jax.tree.map(jax.device_put, tree, shardings)


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, accum_axis: bool = True):
    """This process's rows -> global arrays sharded over the batch axes (multi-host safe)."""
    out = {}
    for k, v in local.items():
        sh = batch_sharding(mesh, v.ndim, accum_axis)
        out[k] = jax.make_array_from_process_local_data(sh, np.asarray(v))
    return out
