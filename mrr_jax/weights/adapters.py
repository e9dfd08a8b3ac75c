"""Adapters saved and loaded on their own: ``<dir>/adapter_config.json`` + ``adapter.safetensors``.

The safetensors keys are the adapter tree's paths joined with dots (``layers.q.a``,
``heads.b``); the JSON holds the LoRA settings, the adapter's role (``stage1``, ``vertical``,
``horizontal`` with its ratio) and a fingerprint of the model it was trained on, so that an
adapter from another model is refused with a clear error instead of mis-scoring.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from mrr_jax.core.config import ModelConfig
from mrr_jax.core.lora import Adapter, LoraConfig
from mrr_jax.data.fileio import atomic_write_bytes

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT = "mrr_jax.adapter/1"


def model_fingerprint(cfg: ModelConfig, start_layer: int) -> dict[str, Any]:
    """What an adapter must match: family and every shape it touches."""
    return {"family": cfg.family, "num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_heads": cfg.num_heads,
            "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
            "start_layer": start_layer}


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = np.asarray(v, np.float32)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def save_adapter(path: str | Path, params: dict, lora: LoraConfig, cfg: ModelConfig,
                 start_layer: int, role: str = "stage1", ratio: int | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """Writes one adapter (atomically, file by file) and returns its folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "role": role, "ratio": ratio,
            "lora": {**dataclasses.asdict(lora), "targets": list(lora.targets)},
            "model": model_fingerprint(cfg, start_layer), **(extra or {})}
    data = safetensors.numpy.save(flatten(params), metadata={"format": FORMAT})
    atomic_write_bytes(path / WEIGHTS_NAME, data)
    atomic_write_bytes(path / CONFIG_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return path


def read_adapter(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """(params tree of numpy arrays, metadata) of a saved adapter, unchecked."""
    path = Path(path)
    conf = path / CONFIG_NAME
    if not conf.is_file():
        raise FileNotFoundError(f"{path}: not an mrr_jax adapter (no {CONFIG_NAME})")
    meta = json.loads(conf.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{conf}: format {meta.get('format')!r}, expected {FORMAT!r} (a PEFT "
                         "adapter? load those with mrr_jax.weights.peft)")
    return unflatten(safetensors.numpy.load_file(str(path / WEIGHTS_NAME))), meta


def load_adapter(path: str | Path, cfg: ModelConfig, start_layer: int) -> Adapter:
    """An adapter checked against the model it is applied to (inference: no dropout)."""
    params, meta = read_adapter(path)
    want = model_fingerprint(cfg, start_layer)
    got = meta.get("model", {})
    diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: adapter {a} vs model {b}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: adapter was trained on another model ({detail})")
    lora = meta["lora"]
    lcfg = LoraConfig(rank=lora["rank"], alpha=lora["alpha"], dropout=lora["dropout"],
                      targets=tuple(lora["targets"]))
    return Adapter(params, lcfg.scale, 0.0)
