"""The one place that talks to jax's sharding API: the (data, fsdp, tensor) mesh and the
``NamedSharding`` of every array the trainer touches.

Arrays are sharded by their *logical* axes (MaxText style): every axis of a weight has a
logical name (``embed``, ``heads``, ``mlp``, ...), given by the model's parameter spec
(``mrr_jax.core.spec``, which installs its :func:`~mrr_jax.core.spec.logical_axes` here at
import: this module sits below the model and names no weight), and ``RULES`` maps logical
names to mesh axes: the model axis D over ``fsdp``, heads (N, K) and the MLP axis F over
``tensor``; every other axis (layers, head dim, vocab, norm scales, LoRA rank, exits) is
replicated. An axis that does not divide evenly stays replicated. LoRA factors take their base
weight's input / output axes plus ``rank`` and optimizer state follows its parameters. Batches
split their leading (row) axis over ``data`` x ``fsdp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")
# Logical axis -> mesh axis; a logical axis not listed is replicated.
RULES = {"embed": "fsdp", "heads": "tensor", "kv_heads": "tensor", "mlp": "tensor"}

LogicalAxes = Callable[[tuple[str, ...], int], tuple[str | None, ...]]


_logical_axes: LogicalAxes | None = None


def set_logical_axes(fn: LogicalAxes) -> None:
    """Installs the model's ``(path, ndim) -> logical axes`` (``mrr_jax.core.spec`` does)."""
    global _logical_axes
    _logical_axes = fn


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


def logical_spec(axes: Sequence[str | None], shape: tuple[int, ...], mesh: Mesh) -> P:
    """The PartitionSpec of an array with these logical ``axes`` under ``RULES``."""
    out = []
    for name, size in zip(axes, shape):
        mesh_axis = RULES.get(name) if name is not None else None
        ok = mesh_axis is not None and mesh.shape[mesh_axis] > 1 \
            and size % mesh.shape[mesh_axis] == 0
        out.append(mesh_axis if ok else None)
    return P(*out)


def tree_shardings(tree, mesh: Mesh, logical_axes: LogicalAxes | None = None):
    """A NamedSharding for every array of a base / heads / LoRA / optimizer pytree, from
    ``logical_axes(path, ndim)`` (default: the model's, see the module docstring)."""
    axes_of = logical_axes or _logical_axes
    if axes_of is None:
        raise RuntimeError("no logical axes: import mrr_jax.core.spec (the model's parameter "
                           "spec) or pass logical_axes")

    def one(path, leaf):
        keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        shape = np.shape(leaf)
        return NamedSharding(mesh, logical_spec(axes_of(keys, len(shape)), shape, mesh))

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
