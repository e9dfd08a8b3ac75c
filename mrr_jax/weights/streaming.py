"""Reading a checkpoint straight onto its devices, in the compute dtype, at the speed of the disk.

:func:`load_params` builds the stacked base tree (``mrr_jax.core.spec``: ``layers/<key>``
[L, *our shape], ``embed`` [V, D], ``final_norm`` [D], ``lm_head`` [V, D] when untied) as
``jax.Array`` s of the target dtype (``float32`` | ``bfloat16``), each placed with its sharding
(a ``NamedSharding`` over a mesh, from ``runtime.sharding``'s rules, or the default device) as
it is assembled. One weight at a time, a chunk of layers at a time:

1. the chunk's HF tensors [c, *HF shape] (``[out, in]`` for a projection, flat for a vector)
   are read **in their stored type** into one host buffer: ``os.preadv`` of the raw bytes
   straight from the safetensors file (bfloat16 / float16 / float32; any other stored type,
   and quantized GGUF blocks, are widened to float32 one tensor at a time), layers read by a
   few threads at once;
2. the buffer goes to the devices as it is, in the HF layout, sharded like its target (the
   mesh axis of our first input / output axis shards HF's flattened input / output axis: the
   same blocks); on the CPU backend an aligned buffer is taken without a copy;
3. one jitted program transposes it into our einsum layout [c, *in, *out], casts it to the
   target dtype (bfloat16 file -> bfloat16: no float32 anywhere; float32 -> bfloat16: round
   to nearest even, as ``ml_dtypes`` / the old float32 loader then ``astype``) and writes it
   into the weight's stacked array (``dynamic_update_slice`` on a donated buffer: in place).

The transposes run on the accelerator (or XLA's CPU transpose), far faster than numpy's strided
copy. The host holds at most one chunk (``chunk_bytes``, default 512 MiB, at least one layer of
one weight) beyond what the devices hold; on the CPU backend, the devices' memory is the host's,
so the peak is about the model in its target dtype plus a chunk and its transposed copy.

Values equal the host loader's (``hf.assemble_params``) bit for bit: transposes move bits and
the one conversion per element is the same rounding. In a multi-process run every process reads
each whole chunk (``device_put`` takes the addressable shards from it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, Sharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from mrr_jax.core import spec
from mrr_jax.core.config import ModelConfig
from mrr_jax.runtime import sharding as shd
from mrr_jax.weights import hf

CHUNK_BYTES = 512 * 2**20
READ_THREADS = 4
_ALIGN = 64  # XLA's CPU client aliases (does not copy) host buffers aligned to 64 bytes


class TensorSource(Protocol):
    """HF-named tensors that can be read one at a time into a caller's buffer."""

    shapes: Mapping[str, tuple[int, ...]]  # HF name -> stored (HF-layout) shape, file order

    def dtype(self, name: str) -> np.dtype:
        """The numpy type ``read_into`` writes (bfloat16 / float16 / float32)."""

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Fills ``out`` (C-contiguous, ``shapes[name]``, ``dtype(name)``)."""


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    raw = np.empty(n + _ALIGN, np.uint8)
    off = -raw.ctypes.data % _ALIGN
    return raw[off:off + n].view(dtype).reshape(shape)


def hf_sharding(s: Sharding, n_in: int, lead: int, ndim: int) -> Sharding:
    """The sharding of a weight in HF layout [*lead, out_flat, in_flat] (or [*lead, flat] for
    a vector) whose transpose into our layout [*lead, *in, *out] has sharding ``s``: a
    flattened group takes the mesh axis of its first (outermost) axis, when the others are
    not split (a block of the outer axis is then a block of the flat one); else it is
    replicated (correct, only more to transfer)."""
    if not isinstance(s, NamedSharding):
        return s
    axes = tuple(s.spec) + (None,) * (ndim - len(s.spec))
    body = axes[lead:]
    groups = [body[n_in:], body[:n_in]] if n_in else [body]
    flat = [g[0] if g and all(a is None for a in g[1:]) else None for g in groups]
    return NamedSharding(s.mesh, P(*axes[:lead], *flat))


@functools.cache
def _to_ours(n_in: int, lead: int, our_shape: tuple[int, ...], dtype, out: Sharding,
             into: bool):
    """A jitted HF-layout array [*lead, *hf] -> ours [*lead, *our_shape] in ``dtype``; with
    ``into`` (lead 1), written at layer ``start`` of a donated stacked buffer (returned)."""

    def convert(x):
        if n_in:
            x = jnp.swapaxes(x, lead, lead + 1)
        return x.reshape(*x.shape[:lead], *our_shape).astype(dtype)

    if into:
        def write(buf, x, start):
            return jax.lax.dynamic_update_slice_in_dim(buf, convert(x), start, 0)
        return jax.jit(write, out_shardings=out, donate_argnums=0)
    return jax.jit(convert, out_shardings=out)


@functools.cache
def _zeros(shape: tuple[int, ...], dtype, out: Sharding):
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=out)


def _read_chunk(source: TensorSource, names: list[str], pool: ThreadPoolExecutor) -> np.ndarray:
    """[len(names), *shape] host buffer (64-byte aligned) of the tensors ``names`` (one
    shape), in their common stored type (float32 if they differ)."""
    dts = {source.dtype(n) for n in names}
    dt = dts.pop() if len(dts) == 1 else np.dtype(np.float32)
    buf = _aligned_empty((len(names), *source.shapes[names[0]]), dt)

    def one(i: int) -> None:
        if source.dtype(names[i]) == dt:
            source.read_into(names[i], buf[i])
        else:
            tmp = np.empty(buf.shape[1:], source.dtype(names[i]))
            source.read_into(names[i], tmp)
            buf[i] = tmp.astype(np.float32)

    if len(names) == 1:
        one(0)
    else:
        list(pool.map(one, range(len(names))))
    return buf


def _load_weight(source: TensorSource, names: list[str], n_in: int, our_shape, dtype,
                 out: Sharding, chunk_bytes: int, pool: ThreadPoolExecutor,
                 stacked: bool = True) -> jax.Array:
    """One weight from its HF tensors ``names``: stacked [L, *our_shape] (one tensor per
    layer), or a global ``our_shape`` (one tensor), with sharding ``out``."""
    n, our_shape = len(names), tuple(our_shape)
    hf_shape = source.shapes[names[0]]
    lead = 1 if stacked else 0
    full = (n, *our_shape) if stacked else our_shape
    itemsize = max(source.dtype(x).itemsize for x in names)
    per_layer = max(1, math.prod(hf_shape) * itemsize)
    c = max(1, min(n, chunk_bytes // per_layer)) if stacked else n
    if c == n:  # the whole weight in one read
        host = _read_chunk(source, names, pool)
        if not stacked:
            host = host[0]
        if not n_in:  # same element order: a reshape (a view), at most a cast on device
            x = jax.device_put(host.reshape(full), out)
            return x if x.dtype == dtype else _to_ours(0, lead, our_shape, dtype, out, False)(x)
        x = jax.device_put(host, hf_sharding(out, n_in, lead, lead + len(hf_shape)))
        return _to_ours(n_in, lead, our_shape, dtype, out, False)(x)
    src_sharding = hf_sharding(out, n_in, 1, 1 + len(hf_shape))
    buf = _zeros(full, dtype, out)()
    write = _to_ours(n_in, 1, our_shape, dtype, out, True)
    for lo in range(0, n, c):
        x = jax.device_put(_read_chunk(source, names[lo:lo + c], pool), src_sharding)
        buf = write(buf, x, np.int32(lo))
        del x
    return buf


def param_shardings(cfg: ModelConfig, mesh=None) -> dict:
    """The sharding of every array of the base tree: ``runtime.sharding``'s rules over
    ``mesh``, or the default device."""
    shapes = spec.param_shapes(cfg)
    if mesh is None:
        dev = SingleDeviceSharding(jax.local_devices()[0])  # where jnp.asarray puts arrays
        return jax.tree.map(lambda _: dev, shapes, is_leaf=lambda x: isinstance(x, tuple))
    structs = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), shapes,
                           is_leaf=lambda x: isinstance(x, tuple))
    return shd.tree_shardings(structs, mesh)


def load_params(cfg: ModelConfig, source: TensorSource, dtype="bfloat16", mesh=None, *,
                shardings: dict | None = None, chunk_bytes: int = CHUNK_BYTES,
                name: str = "checkpoint") -> dict:
    """The base tree of ``cfg`` read from ``source`` onto devices in ``dtype`` (a jnp / numpy
    dtype or its name), sharded over ``mesh`` (``runtime.sharding`` rules), or as given by
    ``shardings`` (a tree like ``spec.param_shapes``), or on the default device. Every
    tensor is checked (names, shapes: ``hf.plan_tensors``) before any is read."""
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
    layers, glob = hf.plan_tensors(cfg, dict(source.shapes), name)
    shardings = shardings or param_shardings(cfg, mesh)
    lay_sh = spec.param_shapes(cfg)["layers"]
    out: dict = {"layers": {}}
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for w in spec.layer_weights(cfg):
            out["layers"][w.name] = _load_weight(
                source, layers[w.name], w.n_in, lay_sh[w.name][1:], dtype,
                shardings["layers"][w.name], chunk_bytes, pool)
        for w in spec.global_weights(cfg):
            out[w.name] = _load_weight(source, [glob[w.name]], w.n_in, spec.shape(w, cfg),
                                       dtype, shardings[w.name], chunk_bytes, pool,
                                       stacked=False)
    return out


def load_checkpoint(path: Path, dtype: str = "float32", *, on_device: bool = True, mesh=None
                    ) -> tuple[ModelConfig, dict, object | None]:
    """(config, params, the ``GGUFCheckpoint`` or None) of an HF directory or ``.gguf`` file,
    in ``dtype`` (``float32`` | ``bfloat16``): on the device(s) by :func:`load_params`
    (``on_device`` or a ``mesh``), else host numpy by ``hf.assemble_params`` (each tensor
    converted straight into the target dtype; no float32 copy of the model)."""
    path = Path(path)
    np_dtype = np.dtype(jnp.dtype(dtype))
    on_device = on_device or mesh is not None
    if path.suffix == ".gguf":
        from mrr_jax.weights.gguf import read_gguf

        ckpt = read_gguf(path)
        cfg = ModelConfig.from_hf(ckpt.hf_config, source=str(path))
        if on_device:
            return cfg, load_params(cfg, ckpt.source(), dtype, mesh, name=str(path)), ckpt
        return cfg, hf.assemble_params(cfg, ckpt.tensors(native=True), np_dtype,
                                       str(path)), ckpt
    if not on_device:
        return (*hf.load_hf_dir(path, np_dtype), None)
    cfg = ModelConfig.from_hf(hf.read_config(path), source=str(path / "config.json"))
    src = hf.SafetensorsSource(hf.safetensors_files(path))
    try:
        return cfg, load_params(cfg, src, dtype, mesh, name=str(path)), None
    finally:
        src.close()


class _Rows:
    """Some rows of a [V, D] matrix by index (what ``core.backbone.init_heads`` reads)."""

    def __init__(self, rows: dict[int, np.ndarray]) -> None:
        self._rows = rows

    def __getitem__(self, i: int) -> np.ndarray:
        return self._rows[int(i)]


def stored_rows(path: Path, cfg: ModelConfig, params: dict, dtype: str, ckpt,
                ids: tuple[int | None, ...]) -> dict:
    """What the exit heads (float32) start from: ``params`` itself, or, when the weights were
    loaded into a narrower type than the file's LM head (float32 / float16 / quantized ->
    bfloat16), a stand-in ``{"embed", "lm_head"}`` holding just the rows ``ids`` as stored
    (read again from the file), so that the heads are what a float32 load gives."""
    if np.dtype(jnp.dtype(dtype)) == np.float32:
        return params
    src = ckpt.source() if ckpt is not None else hf.SafetensorsSource(hf.safetensors_files(path))
    try:
        lm = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
        if src.dtype(lm) == np.dtype(jnp.dtype(dtype)):
            return params
        w = np.empty(src.shapes[lm], src.dtype(lm))
        src.read_into(lm, w)
    finally:
        getattr(src, "close", lambda: None)()
    rows = _Rows({int(i): w[i].astype(np.float32) for i in ids if i is not None})
    return {"embed": rows, "lm_head": rows}
