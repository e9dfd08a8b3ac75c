"""``Cascade``: plans applied in turn to a shrinking candidate list, the careful stage resuming
the cheap one's forward pass where it can.

Text form (``Cascade.parse`` / ``str(cascade)`` round-trip)::

    depth=12@100 > full@20

Each stage is ``PLAN@KEEP``: it scores the ``KEEP`` best documents of the previous stage's order
(the first stage: the first ``KEEP`` documents in the given, first-stage order; ``@KEEP`` may be
left out on the first stage only, meaning every document). ``KEEP`` must shrink from stage to
stage. The final ranking is the last stage's order over its documents, then each earlier
stage's order over the documents it did not pass on, then the documents no stage scored, in
their given order.

A stage **resumes** the previous one (:meth:`Cascade.resumes`) when its plan extends the
previous plan: it goes deeper, compresses exactly as the previous plan below the previous
depth (in the same mode), and runs with the same adapters (the runner checks the last). It then
starts from the previous stage's hidden states at the previous depth instead of layer 0, so the
prefix is paid once (:meth:`Cascade.flops`). Cascades are frozen and hashable.
"""

from __future__ import annotations

import dataclasses
import re

from mrr_jax.core.plan import Plan

_STAGE = re.compile(r"^(?P<plan>.*?)(?:@(?P<keep>[^@]*))?$")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: ``plan`` scores the best ``keep`` documents (None: all of them)."""

    plan: Plan
    keep: int | None

    def __str__(self) -> str:
        text = "full" if self.plan == Plan() else str(self.plan)
        return text if self.keep is None else f"{text}@{self.keep}"


@dataclasses.dataclass(frozen=True, init=False)
class Cascade:
    """Stages, first (cheapest, widest) to last."""

    stages: tuple[Stage, ...]

    def __init__(self, stages) -> None:
        stages = tuple(s if isinstance(s, Stage) else Stage(*s) for s in stages)
        if not stages:
            raise ValueError("cascade: no stages (expected e.g. 'depth=12@100 > full@20')")
        for i, s in enumerate(stages):
            if not isinstance(s.plan, Plan):
                raise TypeError(f"cascade stage {i + 1}: plan must be a Plan, got "
                                f"{type(s.plan).__name__}")
            if s.keep is None:
                if i:
                    raise ValueError(f"cascade stage {i + 1} ({s.plan}): only the first stage "
                                     "may leave out @KEEP")
            elif isinstance(s.keep, bool) or not isinstance(s.keep, int) or s.keep < 1:
                raise ValueError(f"cascade stage {i + 1}: keep must be an integer >= 1, got "
                                 f"{s.keep!r}")
        for i, (a, b) in enumerate(zip(stages, stages[1:]), start=2):
            if a.keep is not None and b.keep >= a.keep:
                raise ValueError(f"cascade stage {i}: keeps {b.keep} of the previous stage's "
                                 f"{a.keep}; a later stage must keep fewer documents")
            if a.plan == b.plan:
                raise ValueError(f"cascade stage {i}: repeats the previous stage's plan "
                                 f"{a.plan} (it would score the same documents the same way)")
        object.__setattr__(self, "stages", stages)

    @classmethod
    def parse(cls, text: str) -> Cascade:
        """Parses ``"depth=12@100 > full@20"``: stages separated by ``>``, each a plan
        (:meth:`Plan.parse` text) and ``@KEEP``."""
        if not isinstance(text, str):
            raise TypeError(f"cascade text must be a str like 'depth=12@100 > full@20', got "
                            f"{type(text).__name__}")
        stages = []
        for i, part in enumerate(text.split(">")):
            m = _STAGE.match(part.strip())
            keep = m.group("keep")
            if keep is not None and not re.fullmatch(r"\s*\d+\s*", keep):
                raise ValueError(f"cascade {text!r}: stage {i + 1} {part.strip()!r}: @KEEP must "
                                 "be a whole number of documents")
            plan_text = m.group("plan").strip()
            if not plan_text:
                raise ValueError(f"cascade {text!r}: stage {i + 1} has no plan (use 'full' "
                                 "for the whole model)")
            try:
                plan = Plan.parse(plan_text)
            except ValueError as e:
                raise ValueError(f"cascade {text!r}: stage {i + 1}: {e}") from None
            stages.append(Stage(plan, None if keep is None else int(keep)))
        try:
            return cls(stages)
        except ValueError as e:
            raise ValueError(f"cascade {text!r}: {e}") from None

    def __str__(self) -> str:
        return " > ".join(map(str, self.stages))

    @property
    def plans(self) -> tuple[Plan, ...]:
        return tuple(s.plan for s in self.stages)

    def resolve(self, num_layers: int) -> Cascade:
        """This cascade checked against a model of ``num_layers`` layers, depths filled in."""
        if len(self.stages) > num_layers:
            raise ValueError(f"cascade {self}: {len(self.stages)} stages for a model of "
                             f"{num_layers} layers")
        return Cascade(Stage(s.plan.resolve(num_layers), s.keep) for s in self.stages)

    def resumes(self, i: int) -> bool:
        """Whether stage ``i`` (>= 1) can start from stage ``i - 1``'s hidden states: its plan
        (resolved) goes deeper in the same mode and compresses exactly as stage ``i - 1``'s
        below that plan's depth. (The runner also needs both to run with the same adapters.)"""
        return extends(self.stages[i - 1].plan, self.stages[i].plan) if i else False

    def flops(self, cfg, query_length: int, passage_length: int, prompt_length: int,
              documents: int | None = None, resume: bool = True) -> float:
        """Forward FLOPs of one query with ``documents`` candidates (default: the first stage's
        keep) of the given lengths: each stage's plan on the documents it scores, a resumed
        stage counting only the layers past the previous depth (``resume=False``: every stage
        from layer 0). ``cfg`` is a ``ModelConfig``."""
        c = self.resolve(cfg.num_layers)
        n = documents if documents is not None else c.stages[0].keep
        if n is None:
            raise ValueError(f"cascade {self}: the first stage keeps every document; pass "
                             "documents=")
        total = 0.0
        for i, s in enumerate(c.stages):
            k = n if s.keep is None else min(s.keep, n)
            per = s.plan.flops(cfg, query_length, passage_length, prompt_length)
            if resume and c.resumes(i):
                per -= c.stages[i - 1].plan.flops(cfg, query_length, passage_length,
                                                  prompt_length)
            total += k * per
            n = k
        return total


def extends(earlier: Plan, later: Plan) -> bool:
    """Whether resolved plan ``later`` continues resolved plan ``earlier``'s forward pass:
    deeper, and ``earlier`` is its prefix (:meth:`Plan.prefix_of`; a compression at exactly
    ``earlier.depth`` is ``later``'s own)."""
    return later.depth > earlier.depth and earlier.prefix_of(later)
