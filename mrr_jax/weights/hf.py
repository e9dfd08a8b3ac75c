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
import re
import struct
import warnings
from collections.abc import Iterable, Iterator
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

    def get(self, name: str) -> np.ndarray:
        """Tensor ``name`` in its stored type: a read-only view of the file (copy or convert it
        to keep it past the file)."""
        info = self._entries[name]
        dt, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if dt not in ST_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has dtype {dt}, which this reader "
                             f"does not know ({', '.join(ST_DTYPES)})")
        arr_dt = ST_DTYPES[dt]
        if hi - lo != math.prod(shape) * arr_dt.itemsize or not 0 <= lo <= hi <= self._size:
            raise ValueError(f"{self.path}: tensor {name!r} has a corrupt byte range")
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


def assemble_params(cfg: ModelConfig, tensors: Iterable[tuple[str, np.ndarray]],
                    dtype=np.float32, source: str = "checkpoint") -> dict:
    """Builds the stacked param tree (``mrr_jax.core.spec``) from HF-named tensors.

    Every tensor's shape is checked; a missing or mis-shaped tensor raises an error naming it.
    Tensors no family uses are ignored with one warning."""
    lmap = keymaps.layer_map(cfg)
    shapes = keymaps.param_shapes(cfg)
    glob_shapes = keymaps.global_shapes(cfg)  # no lm_head when tied: a stored one is ignored
    n_layers = cfg.num_layers
    stacked = {k: np.empty((n_layers, *s), dtype) for k, s in shapes.items()}
    seen: set[tuple[str, int]] = set()
    out: dict = {}
    unused: list[str] = []
    for name, w in tensors:
        m = _LAYER_RE.match(name)
        if m and m.group(2) in lmap:
            i = int(m.group(1))
            ours, n_in = lmap[m.group(2)]
            if i >= n_layers:
                raise ValueError(f"{source}: tensor {name!r} is for layer {i}, but the config "
                                 f"has {n_layers} layers")
            want = keymaps.hf_shape(n_in, shapes[ours])
            if tuple(w.shape) != want:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(w.shape)}, "
                                 f"expected {want} from config.json")
            stacked[ours][i] = keymaps.to_ours(n_in, w, shapes[ours]).astype(dtype)
            seen.add((ours, i))
        elif name in keymaps.GLOBAL_KEYS:
            ours = keymaps.GLOBAL_KEYS[name]
            if ours not in glob_shapes:
                continue
            if tuple(w.shape) != glob_shapes[ours]:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(w.shape)}, "
                                 f"expected {glob_shapes[ours]} from config.json")
            out[ours] = np.array(w, dtype)  # a copy: ``w`` may be a view of the file
        elif not _IGNORED.search(name):
            unused.append(name)
    missing = [f"model.layers.{i}.{suffix}" for suffix, (ours, _) in lmap.items()
               for i in range(n_layers) if (ours, i) not in seen]
    inv = {v: k for k, v in keymaps.GLOBAL_KEYS.items()}
    missing += [inv[k] for k in glob_shapes if k not in out]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise KeyError(f"{source}: missing tensor(s) {missing[:5]}{more}")
    if unused:
        warnings.warn(f"{source}: ignored {len(unused)} tensor(s) no {cfg.family} layer uses, "
                      f"e.g. {unused[:3]}", stacklevel=2)
    out["layers"] = stacked
    return out


def load_hf_dir(path: str | Path, dtype=np.float32) -> tuple[ModelConfig, dict]:
    """(config, host param tree) of a Hugging Face model directory."""
    cfg = ModelConfig.from_hf(read_config(path), source=str(Path(path) / "config.json"))
    params = assemble_params(cfg, iter_safetensors(safetensors_files(path)), dtype, str(path))
    return cfg, params
