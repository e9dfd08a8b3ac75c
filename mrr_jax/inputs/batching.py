"""Host-side batching: length-sorted batches, bucketed shapes, region packing.

Shapes are bucketed so that a run compiles a handful of programs: region lengths round up to
``bucket_length`` (at most 12.5% padding) and the batch to a power of two (at most
``batch_size``). Filler rows repeat
the last real row, so they never change a batch-level quantity (compat mode's padded length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mrr_jax.inputs.template import EncodedPair


def bucket_length(n: int, minimum: int = 8) -> int:
    """``n`` rounded up to a bucket: a multiple of 8 up to 64, then of 2**(floor(log2 n) - 3)
    (8 buckets per octave: 72, 80, ..., 128, 144, ..., 256, 288, ...), so padding wastes at
    most 12.5% while a run compiles only a few programs per octave of lengths."""
    n = max(n, minimum)
    step = max(8, 1 << max((n - 1).bit_length() - 4, 0))
    return -(-n // step) * step


def batch_bucket(n: int, batch_size: int) -> int:
    """Rows a batch of ``n`` is padded to: the next power of two, at most ``batch_size``."""
    return min(batch_size, 1 << max(n - 1, 0).bit_length())


def padded_width(rows: Sequence[EncodedPair]) -> int:
    """Token slots per row once ``rows`` are packed together (the bucketed query, passage and
    prompt regions of ``pack``)."""
    return (bucket_length(max(len(e.query) for e in rows))
            + bucket_length(max(len(e.passage) for e in rows))
            + bucket_length(max(len(e.prompt) for e in rows)))


def batch_shape(rows: Sequence[EncodedPair], batch_size: int) -> tuple[int, int, int, int]:
    """The compiled shape a batch runs at: (rows, query slots, passage slots, prompt slots)."""
    return (batch_bucket(len(rows), batch_size),
            bucket_length(max(len(e.query) for e in rows)),
            bucket_length(max(len(e.passage) for e in rows)),
            bucket_length(max(len(e.prompt) for e in rows)))


def plan_batches(pairs: Sequence[EncodedPair], batch_size: int,
                 tokens_per_batch: int | None = None) -> list[list[int]]:
    """Index batches, longest sequences first (stable; the authors' order): at most
    ``batch_size`` rows and, with ``tokens_per_batch``, ``padded rows * padded_width <=
    tokens_per_batch`` (a pair alone over the budget still forms a batch of one).
    Deterministic in ``pairs`` alone."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if tokens_per_batch is not None and tokens_per_batch < 1:
        raise ValueError("tokens_per_batch must be >= 1")
    order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i]))
    if tokens_per_batch is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        rows = len(cur) + 1
        if cur and (rows > batch_size or batch_bucket(rows, batch_size) * padded_width(
                [pairs[j] for j in (*cur, i)]) > tokens_per_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def pack(rows: Sequence[EncodedPair], n_rows: int, multiple: int = 8) -> dict[str, np.ndarray]:
    """Packs rows into the region layout of ``mrr_jax.core.forward.score_forward``.

    Returns q_ids [B, Qb], p_ids [B, Pb], r_ids [B, Rb] (int32, zero-padded), q_len, p_len,
    r_len [B] int32, and padded_length [] int32: the longest row rounded up to ``multiple``
    (the authors' collator pads to a multiple of 8)."""
    rows = list(rows) + [rows[-1]] * (n_rows - len(rows))
    out: dict[str, np.ndarray] = {}
    for name, key in (("query", "q"), ("passage", "p"), ("prompt", "r")):
        lens = np.array([len(getattr(r, name)) for r in rows], np.int32)
        width = bucket_length(int(lens.max()))
        ids = np.zeros((len(rows), width), np.int32)
        for b, r in enumerate(rows):
            seg = getattr(r, name)
            ids[b, :len(seg)] = seg
        out[key + "_ids"] = ids
        out[key + "_len"] = lens
    longest = max(len(r) for r in rows)
    out["padded_length"] = np.int32(math.ceil(longest / multiple) * multiple)
    return out
