"""Adapters at inference: each loaded adapter with the role that says which plans it serves."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.core.config import ModelConfig
from mrr_jax.core.lora import Adapter
from mrr_jax.core.plan import Plan
from mrr_jax.weights.adapters import AdapterRole, load_adapter, read_adapter


@dataclasses.dataclass(frozen=True)
class PlanAdapter:
    """A loaded adapter and the plans it serves (its :class:`AdapterRole`): ``stage1`` and
    ``vertical`` every plan, ``horizontal`` the plans compressing with its ``ratio``."""

    adapter: Adapter
    role: AdapterRole = AdapterRole()

    def __post_init__(self) -> None:
        if not isinstance(self.role, AdapterRole):
            raise TypeError(f"role must be an AdapterRole (AdapterRole.parse('h4')), got "
                            f"{self.role!r}")

    @property
    def ratio(self) -> int | None:
        """The compression ratio a horizontal adapter serves (None for the others)."""
        return self.role.ratio

    def serves(self, plan: Plan) -> bool:
        """Whether ``plan`` runs with this adapter."""
        return self.role.serves({r for _, r in plan.compress})

    @classmethod
    def load(cls, path: str | Path, cfg: ModelConfig, start_layer: int) -> PlanAdapter:
        """Our adapter folder (role and ratio from its metadata) or a PEFT LoRA folder (a
        stage-1-like adapter applied to every plan)."""
        conf = Path(path) / "adapter_config.json"
        if conf.is_file() and "peft_type" in json.loads(conf.read_text()):
            from mrr_jax.weights.peft import load_peft

            tree, lcfg = load_peft(path, cfg, start_layer)
            return cls(Adapter(tree, lcfg.scale, 0.0))
        _, meta = read_adapter(path)
        return cls(load_adapter(path, cfg, start_layer), AdapterRole.from_meta(meta))


def adapters_for(adapters: Sequence[PlanAdapter], plan: Plan) -> tuple[Adapter, ...]:
    """The adapters a plan runs with, in order: every ``stage1`` and ``vertical`` adapter, and a
    ``horizontal`` adapter when the plan compresses with its ratio (base + stage-1 + V +
    H(ratio); with several ratios in one plan their H adapters add)."""
    return tuple(pa.adapter for pa in adapters if pa.serves(plan))
