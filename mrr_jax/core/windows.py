"""``WindowSpec``: scoring a long passage as overlapping windows of its tokens, and aggregating
the windows' scores per document (MaxP, FirstP, mean).

Text form (``WindowSpec.parse`` / ``str(spec)`` round-trip)::

    max:size=384,stride=192,max_windows=8

The aggregation comes first (``max``: the best window, MaxP; ``first``: the first window only,
FirstP; ``mean``: the mean of the windows' scores), then optional settings after a colon:

- ``size``: passage tokens per window (default: all the room ``max_length`` leaves beside the
  pair's query, so that a passage that fits is one window, scored exactly as without windows);
- ``stride``: passage tokens between the starts of two windows (default ``size // 2``, at least
  1); at most ``size``, so that no token is skipped;
- ``max_windows``: at most this many windows per document, the first ones (default: as many as
  cover the passage).

The split (:func:`window_starts`) is at the token level of the passage: the query and the
prompt are never cut and are repeated in every window. Specs are frozen and hashable.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

AGGREGATIONS = ("max", "first", "mean")
_KEYS = ("size", "stride", "max_windows")


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How long passages are split (``size``, ``stride``, ``max_windows``; None = default) and
    how the windows' scores become the document's (``how``)."""

    how: str = "max"
    size: int | None = None
    stride: int | None = None
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.how not in AGGREGATIONS:
            raise ValueError(f"windows: unknown aggregation {self.how!r}; expected one of "
                             f"{', '.join(AGGREGATIONS)}")
        for name in _KEYS:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"windows: {name} must be an integer >= 1, got {v!r}")
        if self.stride is not None and self.size is not None and self.stride > self.size:
            raise ValueError(f"windows: stride {self.stride} is larger than size {self.size}: "
                             "the tokens between two windows would never be scored")

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """Reads ``"max"``, ``"mean:max_windows=4"``, ``"max:size=384,stride=192"``, ..."""
        if not isinstance(text, str):
            raise TypeError(f"windows text must be a str like 'max:size=384,stride=192', got "
                            f"{type(text).__name__}")
        how, colon, rest = text.strip().partition(":")
        fields: dict[str, int] = {}
        if colon:
            for item in rest.split(","):
                key, eq, value = (s.strip() for s in item.partition("="))
                if key not in _KEYS or not eq or not re.fullmatch(r"-?\d+", value):
                    raise ValueError(f"windows {text!r}: cannot read {item.strip()!r}; expected "
                                     "AGG[:size=N,stride=N,max_windows=N] with AGG one of "
                                     f"{', '.join(AGGREGATIONS)}")
                if key in fields:
                    raise ValueError(f"windows {text!r}: {key} given twice")
                fields[key] = int(value)
        try:
            return cls(how.strip(), **fields)
        except ValueError as e:
            raise ValueError(f"windows {text!r}: {str(e).removeprefix('windows: ')}") from None

    @classmethod
    def of(cls, windows: WindowSpec | str) -> WindowSpec:
        """A spec from a spec or its text."""
        if isinstance(windows, WindowSpec):
            return windows
        return cls.parse(windows)

    def __str__(self) -> str:
        settings = [f"{k}={getattr(self, k)}" for k in _KEYS if getattr(self, k) is not None]
        return self.how + (":" + ",".join(settings) if settings else "")

    def check(self, max_length: int) -> None:
        """This spec against ``max_length`` (query + passage tokens of one window): a ``size``
        that leaves no token for the query is refused. (Whether it fits beside each pair's
        real query is checked when the pairs are split, ``inputs.windows.split_pair``.)"""
        if self.size is not None and self.size >= max_length:
            raise ValueError(f"windows {self}: size {self.size} leaves no room for the query in "
                             f"max_length={max_length} (query + passage tokens); use a size "
                             f"below {max_length}")

    def sizes(self, room: int) -> tuple[int, int]:
        """``(size, stride)`` for a pair whose passage may take ``room`` tokens per window."""
        size = room if self.size is None else self.size
        if size > room:
            raise ValueError(f"windows {self}: size {size} is larger than the {room} passage "
                             "tokens that max_length leaves beside this pair's query; use a "
                             f"size of at most {room}, leave size out (all the room), or "
                             "raise max_length")
        stride = max(size // 2, 1) if self.stride is None else self.stride
        if stride > size:
            raise ValueError(f"windows {self}: stride {stride} is larger than the window "
                             f"size {size} here: the tokens between two windows would never be "
                             "scored")
        return size, stride


def window_starts(n: int, size: int, stride: int, max_windows: int | None = None,
                  first_only: bool = False) -> tuple[list[int], bool]:
    """Where the windows of a passage of ``n`` tokens start, and whether tokens are left
    unscored (``max_windows`` reached, or ``first_only``: FirstP scores one window).

    Windows are ``size`` long, start every ``stride`` tokens, and the last one ends at the
    passage's end: ``[0, stride, 2*stride, ..., n - size]`` (a passage of at most ``size``
    tokens is one window, ``[0]``). ``max_windows`` keeps the first windows."""
    if n <= size:
        return [0], False
    starts = [*range(0, n - size, stride), n - size]
    keep = 1 if first_only else max_windows
    if keep is not None and len(starts) > keep:
        return starts[:keep], True
    return starts, False


def aggregate(scores: np.ndarray, owner: np.ndarray, n: int, how: str) -> np.ndarray:
    """Per-document scores from window scores: ``scores`` [..., W] (any leading axes, e.g.
    exits), ``owner`` [W] the document of each window (0..n-1, every document at least one
    window, a document's windows in passage order) -> [..., n] float32: the ``max``, the
    ``mean`` or the ``first`` of each document's windows."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    scores = np.asarray(scores, np.float32)
    owner = np.asarray(owner, np.int64)
    counts = np.bincount(owner, minlength=n)
    if (counts == 0).any():
        raise ValueError("aggregate: a document has no window")
    if how == "first":
        first = np.searchsorted(owner, np.arange(n))  # owners are grouped, in document order
        return scores[..., first]
    if how == "mean":
        sums = np.zeros((*scores.shape[:-1], n), np.float64)
        np.add.at(sums, (..., owner), scores.astype(np.float64))
        return (sums / counts).astype(np.float32)
    out = np.full((*scores.shape[:-1], n), -np.inf, np.float32)
    np.maximum.at(out, (..., owner), scores)
    return out
