"""Long passages as windows of their tokens (:class:`~mrr_jax.core.windows.WindowSpec`): each
window is one more :class:`EncodedPair` for the usual batched scorer.

A pair is encoded once with its whole passage segment (``ids("B: " + passage)``; the query is cut
to ``query_max_length`` as always). Its passage may take ``room = max_length - len(query
segment)`` tokens per window (``template.passage_room``, the room truncation keeps). The
passage marker ``ids("B:")`` opens every window, as the query and the prompt close and open
it; the rest of the passage (the *body*) is split by :func:`~mrr_jax.core.windows.window_starts`
into windows of ``size`` body tokens (default ``room - len(marker)``). So a window is never
longer than a truncated pair, the first window with the default size is exactly the truncated
pair, and a passage that fits is one window, exactly the pair scored without windows. (A
tokenizer that merges the marker into the passage's first token gets no marker: the windows
are then plain slices of the passage segment.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.core.windows import WindowSpec, window_starts
from mrr_jax.inputs.template import EncodedPair, passage_room


def split_pair(pair: EncodedPair, spec: WindowSpec, max_length: int,
               marker: Sequence[int] = ()) -> tuple[list[EncodedPair], bool]:
    """The windows of ``pair`` (encoded with its whole passage) and whether some of its
    passage is left unscored (``max_windows`` reached, or FirstP's one window). ``ValueError``
    when ``spec.size`` does not fit beside this pair's query."""
    room = passage_room(len(pair.query), max_length)
    p, m = pair.passage, len(marker)
    if not (m and room > m and p[:m] == tuple(marker)):
        m = 0
    head, body = p[:m], p[m:]
    size, stride = spec.sizes(room - m)
    starts, cut = window_starts(len(body), size, stride, spec.max_windows, spec.how == "first")
    return [EncodedPair(pair.query, head + body[s:s + size], pair.prompt, pair.truncated)
            for s in starts], cut


@dataclasses.dataclass
class WindowSet:
    """Every window of ``n`` documents, document by document, in passage order.

    ``windows`` [W] pairs; ``owner`` [W] int64: the document of each window; ``cut`` [n] bool:
    the document's passage (or query) was not scored whole; ``passage_length`` [n]: its
    passage segment's tokens; ``truncated_length`` [n]: those truncation would keep (for the
    cost comparison)."""

    spec: WindowSpec
    windows: list[EncodedPair]
    owner: np.ndarray
    cut: np.ndarray
    passage_length: np.ndarray
    truncated_length: np.ndarray

    @property
    def documents(self) -> int:
        return len(self.cut)

    @property
    def counts(self) -> np.ndarray:
        """[n] windows per document."""
        return np.bincount(self.owner, minlength=self.documents)

    def flops(self, cfg, plan: Plan) -> float:
        """Predicted forward FLOPs of scoring every window under ``plan``: the sum of
        :meth:`Plan.flops` over the windows' real segment lengths."""
        return math.fsum(plan.flops(cfg, len(e.query), len(e.passage), len(e.prompt))
                         for e in self.windows)

    def truncation_flops(self, cfg, plan: Plan) -> float:
        """Predicted forward FLOPs of the same documents truncated (one pair each)."""
        first = np.searchsorted(self.owner, np.arange(self.documents))
        return math.fsum(plan.flops(cfg, len(self.windows[i].query), int(t),
                                    len(self.windows[i].prompt))
                         for i, t in zip(first, self.truncated_length))


def split_pairs(encoded: Sequence[EncodedPair], spec: WindowSpec, max_length: int,
                marker: Sequence[int] = ()) -> WindowSet:
    """:func:`split_pair` of every pair (each encoded with its whole passage), as one
    :class:`WindowSet`; a size that does not fit is refused naming the first such pair."""
    spec.check(max_length)
    windows: list[EncodedPair] = []
    owner: list[int] = []
    cut = np.zeros(len(encoded), bool)
    kept = np.zeros(len(encoded), np.int64)
    for i, pair in enumerate(encoded):
        try:
            ws, cut[i] = split_pair(pair, spec, max_length, marker)
        except ValueError as e:
            raise ValueError(f"pair {i} (query segment of {len(pair.query)} tokens, "
                             f"max_length={max_length}): {e}") from None
        cut[i] |= pair.truncated
        kept[i] = min(len(pair.passage), passage_room(len(pair.query), max_length))
        windows += ws
        owner += [i] * len(ws)
    whole = np.asarray([len(e.passage) for e in encoded], np.int64)
    return WindowSet(spec, windows, np.asarray(owner, np.int64), cut, whole, kept)
