"""Loading Hugging Face checkpoint directories (and any stream of HF-named tensors).

``load_hf_dir(path)`` reads ``config.json`` and ``model.safetensors`` or a sharded
``model.safetensors.index.json``, streaming one tensor at a time into preallocated stacked
arrays, so a checkpoint is never held twice in host memory. Pickled ``.bin`` checkpoints are
refused: unpickling runs arbitrary code.

Safetensors files are read by :class:`SafetensorsFile` (a memory map and the parsed header)
rather than ``safetensors.safe_open(framework="numpy")``: numpy has no bfloat16, and real
Mistral / Llama / Qwen2 / Gemma2 checkpoints are bfloat16, so tensors come out as views in their
stored type (bfloat16 and float8 as ``ml_dtypes`` types) and are widened by the caller, one
tensor at a time.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np

from mrr_jax.core.config import ModelConfig
from mrr_jax.weights import keymaps

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Buffers some exporters write that carry no weights.
_IGNORED = re.compile(r"(rotary_emb\.inv_freq|\.masked_bias|\.attn\.bias)$")


def read_config(path: str | Path) -> dict:
    """The parsed ``config.json`` of a checkpoint directory."""
    f = Path(path) / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory?)")
    return json.loads(f.read_text())


def safetensors_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, refusing pickled ``.bin`` weights."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{index}: shard(s) missing: {', '.join(missing)}")
        return [path / s for s in shards]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    pickles = sorted(p.name for p in path.glob("*.bin"))
    if pickles:
        raise ValueError(
            f"{path}: refusing to load pickled weights {pickles} (unpickling can run arbitrary "
            "code). Convert them once to safetensors, e.g. "
            "`safetensors.torch.save_file(torch.load(f, weights_only=True), "
            "'model.safetensors')`, then load again."
        )
    raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json")


# safetensors dtype -> the numpy dtype its little-endian bytes are (ml_dtypes for what numpy lacks).
ST_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype(np.bool_),
}


# Stored types a loader carries to the device as they are (the device converts them); any
# other stored type is widened to float32 on the host, one tensor at a time.
NATIVE = (np.dtype(ml_dtypes.bfloat16), np.dtype("<f2"), np.dtype("<f4"))


class SafetensorsFile:
    """One safetensors file: its header parsed and checked at open, its tensors read on demand
    from a read-only memory map (nothing is read until a tensor is used).

    ``dtypes``: tensor name -> safetensors dtype name (``"BF16"``, ...), in file order;
    ``metadata``: the ``__metadata__`` strings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        if size < 8:
            raise ValueError(f"{self.path}: not a safetensors file (too short)")
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError(f"{self.path}: not a safetensors file (bad header)")
            raw = f.read(n)
        try:
            header = json.loads(raw)
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ValueError(f"{self.path}: not a safetensors file (bad header)") from exc
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._entries = header
        self._start = 8 + n
        self._size = size - self._start
        self.dtypes: dict[str, str] = {}
        for name, info in header.items():
            if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
                raise ValueError(f"{self.path}: not a safetensors file (bad header entry "
                                 f"{name!r})")
            self.dtypes[name] = info["dtype"]
        self._map: np.memmap | None = None

    def keys(self) -> list[str]:
        return list(self.dtypes)

    def span(self, name: str) -> tuple[np.dtype, tuple[int, ...], int, int]:
        """(numpy dtype, shape, byte offset in the file, byte length) of tensor ``name``,
        checked against the header; reads no tensor data."""
        info = self._entries[name]
        dt, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if dt not in ST_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has dtype {dt}, which this reader "
                             f"does not know ({', '.join(ST_DTYPES)})")
        arr_dt = ST_DTYPES[dt]
        if hi - lo != math.prod(shape) * arr_dt.itemsize or not 0 <= lo <= hi <= self._size:
            raise ValueError(f"{self.path}: tensor {name!r} has a corrupt byte range")
        return arr_dt, shape, self._start + lo, hi - lo

    def get(self, name: str) -> np.ndarray:
        """Tensor ``name`` in its stored type: a read-only view of the file (copy or convert it
        to keep it past the file)."""
        arr_dt, shape, start, n = self.span(name)
        lo, hi = start - self._start, start - self._start + n
        if lo == hi:
            return np.zeros(shape, arr_dt)
        if self._map is None:
            self._map = np.memmap(self.path, np.uint8, mode="r")
        return np.asarray(self._map[self._start + lo:self._start + hi]).view(arr_dt) \
            .reshape(shape)


def iter_safetensors(files: Iterable[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (name, array) one tensor at a time from safetensors files, each in its stored
    type (see :class:`SafetensorsFile`; bfloat16 as ``ml_dtypes.bfloat16``)."""
    for f in files:
        st = SafetensorsFile(f)
        for name in st.keys():
            yield name, st.get(name)


_STRIPE = 16  # HF rows per step of copy_ours' transpose (a cache-friendly stripe)


def copy_ours(dst: np.ndarray, n_in: int, w: np.ndarray) -> None:
    """Writes HF tensor ``w`` (shape-checked) into ``dst`` (C-contiguous, our layout and the
    target dtype): the transpose of a projection goes by stripes of HF rows (several times
    faster than numpy's strided copy of ``w.T``). Stored types other than bfloat16 / float16 /
    float32 are widened to float32 first (as the float32 loader did), so every element is
    ``w.astype(float32).astype(dst.dtype)``."""
    if w.dtype not in NATIVE:
        w = w.astype(np.float32)
    if not n_in:
        dst.reshape(-1)[...] = w.reshape(-1)
        return
    out_flat, in_flat = w.shape
    d2 = dst.reshape(in_flat, out_flat)
    for r in range(0, out_flat, _STRIPE):
        d2[:, r:r + _STRIPE] = w[r:r + _STRIPE].T


def layer_tensor(source, name: str, shape, lmap: dict, shapes: dict, n_layers: int
                 ) -> tuple[str, int, int] | None:
    """(our key, layer, input axes) of the per-layer HF tensor ``name``, checked against the
    config (its layer exists, its shape is the one ``config.json`` implies), or None when
    ``name`` is not a per-layer tensor of this family."""
    m = _LAYER_RE.match(name)
    if not (m and m.group(2) in lmap):
        return None
    i = int(m.group(1))
    ours, n_in = lmap[m.group(2)]
    if i >= n_layers:
        raise ValueError(f"{source}: tensor {name!r} is for layer {i}, but the config has "
                         f"{n_layers} layers")
    want = keymaps.hf_shape(n_in, shapes[ours])
    if tuple(shape) != want:
        raise ValueError(f"{source}: tensor {name!r} has shape {tuple(shape)}, expected {want} "
                         "from config.json")
    return ours, i, n_in


def tensor_slots(cfg: ModelConfig, source: str
                 ) -> Callable[[str, Sequence[int]], tuple[str, int | None, int] | None]:
    """``slot(name, shape)``: where HF tensor ``name`` goes, checked against the config: (our
    key, layer, input axes) for a per-layer tensor, (our key, None, 0) for a global one, None
    for one this model does not take (a stored ``lm_head`` of a tied model, or a tensor of no
    family: :func:`unused_tensor` says whether to warn about it)."""
    lmap, shapes = keymaps.layer_map(cfg), keymaps.param_shapes(cfg)
    glob_shapes = keymaps.global_shapes(cfg)  # no lm_head when tied: a stored one is ignored

    def slot(name: str, shape: Sequence[int]) -> tuple[str, int | None, int] | None:
        hit = layer_tensor(source, name, shape, lmap, shapes, cfg.num_layers)
        if hit or name not in keymaps.GLOBAL_KEYS:
            return hit
        ours = keymaps.GLOBAL_KEYS[name]
        if ours not in glob_shapes:
            return None
        if tuple(shape) != glob_shapes[ours]:
            raise ValueError(f"{source}: tensor {name!r} has shape {tuple(shape)}, "
                             f"expected {glob_shapes[ours]} from config.json")
        return ours, None, 0

    return slot


def unused_tensor(name: str) -> bool:
    """Whether a tensor :func:`tensor_slots` does not take is worth a warning (not a known
    global, not one of the always-ignored buffers)."""
    return name not in keymaps.GLOBAL_KEYS and not _IGNORED.search(name)


def check_complete(cfg: ModelConfig, slots: set[tuple[str, int | None]], unused: list[str],
                   source: str, stacklevel: int) -> None:
    """Raises KeyError naming the tensors missing from ``slots`` ((our key, layer) filled;
    layer None for globals) and warns once about ``unused`` ones."""
    missing = [f"model.layers.{i}.{suffix}" for suffix, (ours, _) in
               keymaps.layer_map(cfg).items() for i in range(cfg.num_layers)
               if (ours, i) not in slots]
    inv = {v: k for k, v in keymaps.GLOBAL_KEYS.items()}
    missing += [inv[k] for k in keymaps.global_shapes(cfg) if (k, None) not in slots]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise KeyError(f"{source}: missing tensor(s) {missing[:5]}{more}")
    if unused:
        warnings.warn(f"{source}: ignored {len(unused)} tensor(s) no {cfg.family} layer uses, "
                      f"e.g. {unused[:3]}", stacklevel=stacklevel + 1)


def assemble_params(cfg: ModelConfig, tensors: Iterable[tuple[str, np.ndarray]],
                    dtype=np.float32, source: str = "checkpoint") -> dict:
    """Builds the stacked param tree (``mrr_jax.core.spec``) from HF-named tensors, as host
    numpy arrays of ``dtype``: each tensor is converted and transposed straight into its slot
    of the preallocated stacked array (no float32 copy of the model when ``dtype`` is
    bfloat16). For arrays placed on devices, see ``mrr_jax.weights.streaming``.

    Every tensor's shape is checked; a missing or mis-shaped tensor raises an error naming it.
    Tensors no family uses are ignored with one warning."""
    stacked = {k: np.empty((cfg.num_layers, *shape), dtype)
               for k, shape in keymaps.param_shapes(cfg).items()}
    out: dict = {}
    filled: set[tuple[str, int | None]] = set()
    unused: list[str] = []
    slots = tensor_slots(cfg, source)
    for name, w in tensors:
        slot = slots(name, w.shape)
        if slot is None:
            if unused_tensor(name):
                unused.append(name)
            continue
        ours, i, n_in = slot
        if i is None:
            out[ours] = np.empty(w.shape, dtype)  # a copy: ``w`` may be a view of the file
            copy_ours(out[ours], 0, w)
        else:
            copy_ours(stacked[ours][i], n_in, w)
        filled.add((ours, i))
    check_complete(cfg, filled, unused, source, stacklevel=2)
    out["layers"] = stacked
    return out


class SafetensorsSource:
    """The tensors of a checkpoint's safetensors files, by name, for the placing loader
    (``mrr_jax.weights.streaming``): ``shapes`` (HF name -> stored shape, in file order) comes
    from the headers alone; :meth:`read_into` reads one tensor's bytes with ``os.preadv``
    straight into a caller's buffer (no memory map, no intermediate copy) when its stored type
    is bfloat16 / float16 / float32, and widens any other type to float32 through a view of
    the file. Reads are thread-safe."""

    def __init__(self, files: Iterable[Path]) -> None:
        self._where: dict[str, SafetensorsFile] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._fds: dict[Path, int] = {}
        for f in files:
            st = SafetensorsFile(f)
            for name in st.keys():
                self._where[name] = st
                self.shapes[name] = tuple(st._entries[name]["shape"])

    def dtype(self, name: str) -> np.dtype:
        """The type :meth:`read_into` writes: the stored one if native, else float32."""
        dt = self._where[name].span(name)[0]
        return dt if dt in NATIVE else np.dtype(np.float32)

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Fills ``out`` (C-contiguous, the tensor's stored shape and :meth:`dtype`)."""
        st = self._where[name]
        dt, shape, start, n = st.span(name)
        if dt not in NATIVE:
            out[...] = st.get(name).astype(np.float32)
            return
        assert out.flags.c_contiguous and out.dtype == dt and out.nbytes == n, name
        fd = self._fds.get(st.path)
        if fd is None:
            fd = self._fds[st.path] = os.open(st.path, os.O_RDONLY)
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < n:  # preadv may return less (Linux caps one call at ~2 GiB)
            got = os.preadv(fd, [view[done:]], start + done)
            if got <= 0:
                raise ValueError(f"{st.path}: tensor {name!r} is cut short (file truncated?)")
            done += got

    def close(self, _close=os.close) -> None:
        """Closes the file descriptors (reads after this reopen them)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            _close(fd)

    def __del__(self) -> None:
        self.close()


def plan_tensors(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]],
                 source: str = "checkpoint") -> tuple[dict[str, list[str]], dict[str, str]]:
    """Which HF tensor fills what, checked before any data is read: (``layers``: our key ->
    the HF name of each layer 0..L-1, ``globals``: our key -> HF name). ``shapes``: HF name ->
    stored shape, in file order. Raises the same errors as :func:`assemble_params` (a tensor of
    a layer the config lacks, a wrong shape, missing tensors) and warns once about unused
    ones."""
    layers: dict[str, list] = {k: [None] * cfg.num_layers for k in keymaps.param_shapes(cfg)}
    glob: dict[str, str] = {}
    unused: list[str] = []
    slots = tensor_slots(cfg, source)
    for name, shape in shapes.items():
        slot = slots(name, shape)
        if slot is None:
            if unused_tensor(name):
                unused.append(name)
        elif slot[1] is None:
            glob[slot[0]] = name
        else:
            layers[slot[0]][slot[1]] = name
    check_complete(cfg, {(k, i) for k, names in layers.items()
                         for i, n in enumerate(names) if n is not None}
                   | {(k, None) for k in glob}, unused, source, stacklevel=3)
    return layers, glob


def load_hf_dir(path: str | Path, dtype=np.float32) -> tuple[ModelConfig, dict]:
    """(config, host param tree) of a Hugging Face model directory."""
    cfg = ModelConfig.from_hf(read_config(path), source=str(Path(path) / "config.json"))
    params = assemble_params(cfg, iter_safetensors(safetensors_files(path)), dtype, str(path))
    return cfg, params
