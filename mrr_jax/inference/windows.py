"""Long documents as windows (``Reranker.compute_score(windows=...)``, ``rank``,
``rank_batch``): each document's passage is split into overlapping windows of its tokens
(:mod:`mrr_jax.inputs.windows`), every window is scored as one more pair by the usual batched
scorer (any plan, its adapters, full batches of the usual bucketed shapes), and each document
gets the ``max`` (MaxP), ``first`` (FirstP) or ``mean`` of its windows' scores
(:class:`~mrr_jax.core.windows.WindowSpec`, e.g. ``"max:size=384,stride=192,max_windows=8"``).

After a windowed call, ``rr.last_windows`` holds its :class:`WindowStats`: documents, windows
scored, windows per document, and the predicted FLOPs against truncating every document
(:meth:`Plan.flops` of each window, summed); :func:`window_flops` predicts them without
scoring.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.core.windows import WindowSpec, aggregate
from mrr_jax.inputs.template import PairTemplate
from mrr_jax.inputs.windows import WindowSet, split_pairs

NO_LIMIT = sys.maxsize // 4  # a max_length that never cuts a passage


@dataclasses.dataclass(frozen=True)
class WindowStats:
    """The cost of one windowed call: ``documents`` scored as ``windows`` windows in all,
    ``cut`` documents not scored whole (past ``max_windows``, FirstP's one window, or a cut
    query), and the predicted forward FLOPs of the windows (``flops``) and of the same
    documents truncated (``truncation_flops``) under the call's plan."""

    spec: str
    plan: str
    documents: int
    windows: int
    cut: int
    flops: float
    truncation_flops: float

    @property
    def mean_windows(self) -> float:
        """Windows per document."""
        return self.windows / self.documents if self.documents else 0.0

    @property
    def relative_flops(self) -> float:
        """Predicted FLOPs against truncation (1.0: the same cost)."""
        return self.flops / self.truncation_flops if self.truncation_flops else 1.0

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean_windows": self.mean_windows,
                "relative_flops": self.relative_flops}


def encode_windows(rr, pairs: Sequence[tuple[str, str]], windows: WindowSpec | str,
                   max_length: int = 512, query_max_length: int | None = None) -> WindowSet:
    """The windows of (query, passage) ``pairs``, tokenized with ``rr``'s template: the query
    cut to ``query_max_length`` (default ``max_length * 3 // 4``, as without windows), the
    passage whole, then split (:func:`mrr_jax.inputs.windows.split_pairs`)."""
    spec = WindowSpec.of(windows)
    spec.check(max_length)
    qmax = max_length * 3 // 4 if query_max_length is None else query_max_length
    whole = rr.encode(pairs, NO_LIMIT, qmax)
    marker = PairTemplate(rr.tokenizer, rr.bos_token_id, rr.prompt).marker
    return split_pairs(whole, spec, max_length, marker)


def window_stats(rr, ws: WindowSet, plan: Plan | str | None = None) -> WindowStats:
    """:class:`WindowStats` of scoring ``ws`` under ``plan`` (resolved by ``rr``)."""
    plan = rr.resolve_plan(plan)
    return WindowStats(str(ws.spec), str(plan), ws.documents, len(ws.windows),
                       int(ws.cut.sum()), ws.flops(rr.cfg, plan),
                       ws.truncation_flops(rr.cfg, plan))


def window_flops(rr, pairs: Sequence[tuple[str, str]], windows: WindowSpec | str, *,
                 plan: Plan | str | None = None, max_length: int = 512,
                 query_max_length: int | None = None) -> WindowStats:
    """The predicted cost of scoring ``pairs`` with ``windows`` under ``plan``, nothing
    scored: ``.flops`` (windows x per-pair FLOPs, summed), ``.truncation_flops``,
    ``.relative_flops``, ``.windows``, ``.mean_windows``."""
    return window_stats(rr, encode_windows(rr, pairs, windows, max_length, query_max_length),
                        plan)


def score_windows(rr, pairs: Sequence[tuple[str, str]], windows: WindowSpec | str, *,
                  plan: Plan | str | None = None, exits: Sequence[int] | None = None,
                  batch_size: int = 32, max_length: int = 512,
                  query_max_length: int | None = None) -> np.ndarray:
    """Per-document scores [len(exits), n] (one row, the plan's depth, without ``exits``):
    every window scored by ``rr.score_encoded`` (all windows of all pairs share batches),
    then aggregated per document. Sets ``rr.last_windows`` and ``rr.last_truncated`` (the
    documents not scored whole) and warns about the latter."""
    ws = encode_windows(rr, pairs, windows, max_length, query_max_length)
    scores = rr.score_encoded(ws.windows, plan=plan, exits=exits, batch_size=batch_size) \
        if ws.windows else np.zeros((len(exits or [0]), 0), np.float32)
    rr.last_windows = window_stats(rr, ws, plan)
    rr.last_truncated = rr.last_windows.cut
    if rr.last_truncated:
        warnings.warn(f"{rr.last_truncated} of {ws.documents} documents were not scored whole "
                      f"with windows {ws.spec} (max_windows reached, FirstP's one window, or "
                      f"the query cut to query_max_length)", stacklevel=3)
    return aggregate(scores, ws.owner, ws.documents, ws.spec.how)
