"""Loading Hugging Face checkpoint directories (and any stream of HF-named tensors).

``load_hf_dir(path)`` reads ``config.json`` and ``model.safetensors`` or a sharded
``model.safetensors.index.json``, streaming one tensor at a time into preallocated stacked
arrays, so a checkpoint is never held twice in host memory. Pickled ``.bin`` checkpoints are
refused: unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from safetensors import safe_open

from mrr_jax.checkpoint import keymaps
from mrr_jax.config import ModelConfig

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


def iter_safetensors(files: Iterable[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (name, array) one tensor at a time from safetensors files."""
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():
                yield name, st.get_tensor(name)


def assemble_params(cfg: ModelConfig, tensors: Iterable[tuple[str, np.ndarray]],
                    dtype=np.float32, source: str = "checkpoint") -> dict:
    """Builds the stacked param tree (see ``mrr_jax.model``) from HF-named tensors.

    Every tensor's shape is checked; a missing or mis-shaped tensor raises an error naming it.
    Tensors no family uses are ignored with one warning."""
    lmap = keymaps.layer_map(cfg)
    shapes = keymaps.param_shapes(cfg)
    n_layers = cfg.num_layers
    stacked = {k: np.empty((n_layers, *s), dtype) for k, s in shapes.items()}
    seen: set[tuple[str, int]] = set()
    glob_shapes = {
        "embed": (cfg.vocab_size, cfg.hidden_size),
        "lm_head": (cfg.vocab_size, cfg.hidden_size),
        "final_norm": (cfg.hidden_size,),
    }
    out: dict = {}
    unused: list[str] = []
    for name, w in tensors:
        m = _LAYER_RE.match(name)
        if m and m.group(2) in lmap:
            i = int(m.group(1))
            ours, kind = lmap[m.group(2)]
            if i >= n_layers:
                raise ValueError(f"{source}: tensor {name!r} is for layer {i}, but the config "
                                 f"has {n_layers} layers")
            want = keymaps.hf_shape(kind, shapes[ours])
            if tuple(w.shape) != want:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(w.shape)}, "
                                 f"expected {want} from config.json")
            stacked[ours][i] = keymaps.to_ours(kind, w, shapes[ours]).astype(dtype)
            seen.add((ours, i))
        elif name in keymaps.GLOBAL_KEYS:
            ours = keymaps.GLOBAL_KEYS[name]
            if ours == "lm_head" and cfg.tie_word_embeddings:
                continue
            if tuple(w.shape) != glob_shapes[ours]:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(w.shape)}, "
                                 f"expected {glob_shapes[ours]} from config.json")
            out[ours] = np.asarray(w, dtype)
        elif not _IGNORED.search(name):
            unused.append(name)
    missing = [f"model.layers.{i}.{suffix}" for suffix, (ours, _) in lmap.items()
               for i in range(n_layers) if (ours, i) not in seen]
    need = ["embed", "final_norm"] + ([] if cfg.tie_word_embeddings else ["lm_head"])
    inv = {v: k for k, v in keymaps.GLOBAL_KEYS.items()}
    missing += [inv[k] for k in need if k not in out]
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
