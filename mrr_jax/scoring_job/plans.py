"""Several plans in as few forward passes as possible, and plan file names.

A plan whose schedule equals a deeper plan's schedule below its own depth is read off that
plan's pass as an extra exit (so ``depth=12``, ``depth=20`` and ``full`` cost one full pass);
other schedules get passes of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mrr_jax.core.plan import Plan


def plan_filename(plan: Plan | str) -> str:
    """A file-name-safe form of a plan: ``depth=20 compress=8:2,16:2 mode=merge`` ->
    ``depth-20_compress-8x2-16x2_mode-merge`` (distinct plans give distinct names)."""
    return str(plan).replace(":", "x").replace(",", "-").replace("=", "-").replace(" ", "_")


@dataclasses.dataclass(frozen=True)
class Pass:
    """One forward pass: the deepest ``plan`` of a group and the plans it serves.

    ``targets``: ``(plan index, exit layer)`` for every plan read off this pass."""

    plan: Plan
    targets: tuple[tuple[int, int], ...]

    @property
    def exits(self) -> tuple[int, ...]:
        """The exit layers to score, sorted, without repeats."""
        return tuple(sorted({k for _, k in self.targets}))


def group_plans(plans: Sequence[Plan]) -> list[Pass]:
    """Passes covering resolved ``plans``: deepest first, each later plan joining the first pass
    that serves it (``plan.prefix_of(deep)``). Plans must be resolved (depth filled in)."""
    passes: list[tuple[Plan, list[tuple[int, int]]]] = []
    for j in sorted(range(len(plans)), key=lambda j: (-plans[j].depth, j)):
        plan = plans[j]
        for deep, targets in passes:
            if plan.prefix_of(deep):
                targets.append((j, plan.depth))
                break
        else:
            passes.append((plan, [(j, plan.depth)]))
    return [Pass(deep, tuple(targets)) for deep, targets in passes]


def resolve_plans(plans: Sequence[Plan | str], num_layers: int) -> list[Plan]:
    """``plans`` (objects or :meth:`Plan.parse` text) resolved for ``num_layers``, each once,
    in order; ``ValueError`` for none."""
    out: list[Plan] = []
    for p in plans:
        plan = (Plan.parse(p) if isinstance(p, str) else p).resolve(num_layers)
        if plan not in out:
            out.append(plan)
    if not out:
        raise ValueError("no plan given")
    return out
