"""The argument checks of :meth:`mrr_jax.Reranker.rank`, and its first-stage fusion: one place
for the messages a caller sees when a ranking request is malformed."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from mrr_jax.data.fusion import check_norm, check_weight, fuse


def check_exits(plan, exits: Sequence[int] | None, start_layer: int) -> tuple[int, ...]:
    """The exit layers to run under resolved ``plan``, sorted and unique: ``plan.depth`` by
    default, else each of ``exits`` (ints within ``start_layer..plan.depth``)."""
    if exits is None:
        return (plan.depth,)
    exits = list(exits)
    odd = [k for k in exits if isinstance(k, bool) or not isinstance(k, numbers.Integral)]
    if odd:
        raise TypeError(f"exits must be ints, got {', '.join(map(repr, odd))}")
    bad = [k for k in exits if not start_layer <= k <= plan.depth]
    if bad or not exits:
        raise ValueError(f"exits {[int(k) for k in exits]} must be non-empty and within "
                         f"{start_layer}..{plan.depth} (start_layer..depth of {plan})")
    return tuple(sorted(set(int(k) for k in exits)))


def warn_truncated(count: int, total: int, max_length: int, stacklevel: int = 3) -> None:
    """Warns that ``count`` of ``total`` pairs were cut to ``max_length`` (none: silent)."""
    if count:
        warnings.warn(f"{count} of {total} pairs were truncated to max_length={max_length} "
                      "(passage cut; the prompt is never cut)", stacklevel=stacklevel)


def check_text(name: str, text) -> None:
    """``text`` must be a non-empty str (``name`` says which argument, in the message)."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} is empty")


def documents_of(documents) -> Sequence[str]:
    """``rank``'s documents as a sequence of non-empty str (an iterable is read into a list)."""
    if isinstance(documents, str | bytes | bytearray):
        raise TypeError(f"documents must be a sequence of str, got one {type(documents).__name__}"
                        " (to rank a single passage, pass [passage])")
    if not isinstance(documents, Sequence):
        if not isinstance(documents, Iterable):
            raise TypeError(f"documents must be a sequence of str, got "
                            f"{type(documents).__name__}")
        documents = list(documents)
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"documents must be a sequence of str: documents[{i}] is "
                            f"{type(doc).__name__}")
        if not doc.strip():
            raise ValueError(f"documents[{i}] is empty")
    return documents


def check_top_k(top_k) -> None:
    """``top_k``: None (every document) or an int >= 1."""
    if top_k is not None and (isinstance(top_k, bool)
                              or not isinstance(top_k, numbers.Integral)):
        raise TypeError(f"top_k must be None (all) or an int >= 1, got "
                        f"{type(top_k).__name__} {top_k!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None (all) or an int >= 1, got {top_k!r}")


def first_stage_of(first_stage_scores, fuse_weight, fuse_norm: str,
                   n: int) -> list[float] | None:
    """The checked first-stage scores (one finite number per document) when ``fuse_weight``
    is set, else None; ``ValueError`` for a weight outside [0, 1], an unknown norm, scores
    without a weight or a weight without scores, or a length other than ``n``."""
    if fuse_weight is None:
        if first_stage_scores is not None:
            raise ValueError("first_stage_scores is used only with fuse=WEIGHT (in [0, 1])")
        return None
    check_weight(fuse_weight)
    check_norm(fuse_norm)
    if first_stage_scores is None:
        raise ValueError("fuse=WEIGHT needs first_stage_scores: one score per document, in "
                         "the documents' order")
    if isinstance(first_stage_scores, str | bytes) or not isinstance(
            first_stage_scores, Iterable):
        raise ValueError(f"first_stage_scores must be a sequence of numbers, got "
                         f"{type(first_stage_scores).__name__}")
    scores = list(first_stage_scores)
    if len(scores) != n:
        raise ValueError(f"first_stage_scores has {len(scores)} scores for {n} documents "
                         "(one per document, in order)")
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
            raise ValueError(f"first_stage_scores[{i}] must be a finite number, got {s!r}")
    return [float(s) for s in scores]


def fused_scores(scores: np.ndarray, first: Sequence[float], weight: float,
                 norm: str) -> np.ndarray:
    """:func:`mrr_jax.data.fusion.fuse` of one query's model ``scores`` with its first-stage
    scores (both in the documents' order), as float64 [n]."""
    keys = [str(i) for i in range(len(first))]
    fused = fuse(dict(zip(keys, map(float, scores))), dict(zip(keys, first)), weight, norm)
    return np.asarray([fused[k] for k in keys], np.float64)
