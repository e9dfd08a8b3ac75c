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


def adapter_heads(paths: Sequence[str | Path], no_token: str | None = None) -> str:
    """The ``no_token`` of the exit heads that the adapters at ``paths`` were trained on
    (``""``: the reference's "Yes"-row heads; ``"No"``: "Yes" minus "No", docs/method.md §12),
    read from their ``heads`` metadata (adapters saved without it, and PEFT adapters, were
    trained on the reference's heads). ``no_token`` is the caller's choice: None adopts the
    adapters'; a different one is an error, as are adapters trained on different heads."""
    seen: dict[str, str] = {}
    for p in paths:
        meta = json.loads((Path(p) / "adapter_config.json").read_text()) \
            if (Path(p) / "adapter_config.json").is_file() else {}
        seen[str(p)] = (meta.get("heads") or {}).get("no_token", "")
    kinds = set(seen.values())
    if len(kinds) > 1:
        detail = ", ".join(f"{p}: {_heads_name(n)}" for p, n in seen.items())
        raise ValueError(f"these adapters were trained on different exit heads ({detail}); "
                         "load adapters of one training run")
    trained = kinds.pop() if kinds else None
    if no_token is None:
        return trained or ""
    if trained is not None and no_token != trained:
        raise ValueError(f"no_token={no_token!r} asks for {_heads_name(no_token)} heads, but the "
                         f"adapters were trained on {_heads_name(trained)} heads; leave "
                         "no_token unset to use theirs")
    return no_token


def _heads_name(no_token: str) -> str:
    return f'"Yes" minus {no_token!r}' if no_token else '"Yes"-row'
