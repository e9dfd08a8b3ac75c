"""Adapters saved and loaded on their own: ``<dir>/adapter_config.json`` + ``adapter.safetensors``.

The safetensors keys are the adapter tree's paths joined with dots (``layers.q.a``,
``heads.b``); the JSON holds the LoRA settings, the adapter's role (an :class:`AdapterRole`:
``role`` = ``stage1``, ``vertical`` or ``horizontal``, and ``ratio``) and a fingerprint of the
model it was trained on, so that an adapter from another model is refused with a clear error
instead of mis-scoring.
"""

from __future__ import annotations

import dataclasses
import json
import re
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
ROLE_KINDS = ("stage1", "vertical", "horizontal")


@dataclasses.dataclass(frozen=True)
class AdapterRole:
    """What an adapter is for (docs/method.md §5-6): ``stage1`` (stage-1 self-distillation) and
    ``vertical`` (V-LoRA) serve every plan; ``horizontal`` (H-LoRA) serves the plans that
    compress with its ``ratio`` (>= 2).

    ``str(role)`` is its name, the folder under ``<workdir>/adapters/`` and the key of its
    trainable tree in a training checkpoint: ``stage1``, ``vertical``, ``h<ratio>`` (``h4``).
    Saved adapters store it as ``role`` (the kind) and ``ratio`` in their metadata."""

    kind: str = "stage1"
    ratio: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS:
            raise ValueError(f"adapter role {self.kind!r}: expected one of {ROLE_KINDS}")
        if self.kind == "horizontal":
            if isinstance(self.ratio, bool) or not isinstance(self.ratio, int) \
                    or self.ratio < 2:
                raise ValueError(f"a horizontal adapter needs an int ratio >= 2, got "
                                 f"{self.ratio!r}")
        elif self.ratio is not None:
            raise ValueError(f"a {self.kind} adapter has no ratio, got {self.ratio!r}")

    @classmethod
    def parse(cls, name: str) -> AdapterRole:
        """The role named ``stage1``, ``vertical`` or ``h<ratio>`` (``h4``)."""
        if not isinstance(name, str):
            raise TypeError(f"an adapter role name is a str, got {type(name).__name__}")
        if m := re.fullmatch(r"h(\d+)", name):
            return cls("horizontal", int(m.group(1)))
        if name in ("stage1", "vertical"):
            return cls(name)
        raise ValueError(f"adapter role {name!r}: expected stage1, vertical or h<ratio> "
                         "(e.g. h4)")

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> AdapterRole:
        """The role in a saved adapter's metadata (``role``, ``ratio``; stage1 when absent)."""
        return cls(meta.get("role", "stage1"), meta.get("ratio"))

    def meta(self) -> dict[str, Any]:
        """The metadata keys a saved adapter stores: ``{"role": kind, "ratio": ratio}``."""
        return {"role": self.kind, "ratio": self.ratio}

    def serves(self, ratios: set[int] | frozenset[int]) -> bool:
        """Whether a plan that compresses with ``ratios`` runs with this adapter."""
        return self.kind != "horizontal" or self.ratio in ratios

    def __str__(self) -> str:
        return f"h{self.ratio}" if self.kind == "horizontal" else self.kind


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
                 start_layer: int, role: AdapterRole | str = "stage1", ratio: int | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """Writes one adapter (atomically, file by file) and returns its folder. ``role``: an
    :class:`AdapterRole`, or its kind (``stage1``, ``vertical``, ``horizontal``) with
    ``ratio``."""
    if not isinstance(role, AdapterRole):
        role = AdapterRole(role, ratio)
    elif ratio is not None and ratio != role.ratio:
        raise ValueError(f"ratio={ratio} contradicts the role {role}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **role.meta(),
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
