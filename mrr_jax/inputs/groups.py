"""Training input pipeline: FlagEmbedding JSONL -> deterministic, host-sharded, static-shape
batches of query groups (docs/method.md §1.2 and §5.2, docs/design.md §3).

The pieces: :mod:`mrr_jax.inputs.flag_dataset` reads and validates the files,
:mod:`mrr_jax.inputs.group_encoding` draws and tokenizes the groups; this module orders them
into training steps (:class:`TrainData`) and fixed dev groups (:func:`dev_groups`).

Order. The queries of epoch ``e`` are a permutation drawn from ``(seed, e)``; global
micro-step ``s`` (counted from 0 across epochs, ``e = s // steps_per_epoch``, the last partial
batch of an epoch is dropped) takes positions ``[k*Q, (k+1)*Q)`` of that permutation with
``k = s % steps_per_epoch``, and process ``p`` of ``n`` takes the contiguous slice
``[p*Q/n, (p+1)*Q/n)`` of those. A query's group draw depends only on ``(seed, epoch, query
row)``. So ``batch(step, p, n)`` is a pure function of its arguments: the data position is the
step number, and resuming is calling it with the next step on any number of hosts.

Shapes (einsum letters): ``Q`` queries per host batch, ``G`` group size, ``R = Q*G`` rows,
query-major (rows ``[i*G, (i+1)*G)`` are query ``i``'s group, its positive first); ``Qb``,
``Pb``, ``Rb`` region slots.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tokenizers

from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike
from mrr_jax.inputs.flag_dataset import check_negatives, iter_rows, load_flag_dataset
from mrr_jax.inputs.group_encoding import GroupEncoder, TrainBatch, fixed_group, sample_group
from mrr_jax.inputs.template import DEFAULT_PROMPT

__all__ = ["DevGroups", "GroupEncoder", "TrainBatch", "TrainData", "dev_groups", "fixed_group",
           "load_flag_dataset", "sample_group"]

# Stream tags that keep the epoch-order and group-sampling random streams apart.
_ORDER_STREAM = 0
_GROUP_STREAM = 1


def _rows(columns: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Column dict (as ``Dataset.__getitem__`` returns) -> row dicts."""
    keys = list(columns)
    return [dict(zip(keys, vals)) for vals in zip(*(columns[k] for k in keys))]


# ----------------------------------------------------------------------------- training


class TrainData:
    """Deterministic, host-sharded training batches from FlagEmbedding JSONL.

    ``global_batch`` (Q) queries per optimizer micro-step across all hosts, each with
    ``group_size`` (G) candidates. ``batch(step, process_index, process_count)`` is a pure
    function of its arguments (see the module docstring); ``steps_per_epoch = N // Q`` with N
    the number of queries (the last partial batch of each epoch is dropped).
    """

    def __init__(self, paths: PathLike | Sequence[PathLike], tokenizer: tokenizers.Tokenizer,
                 bos_id: int, *, global_batch: int, group_size: int = 16, seed: int = 42,
                 query_max_len: int = 32, passage_max_len: int = 192,
                 prompt: str = DEFAULT_PROMPT, pad_id: int = 0,
                 passage_buckets: Sequence[int] | None = None,
                 cache_dir: PathLike | None = None) -> None:
        if global_batch < 1 or group_size < 1:
            raise ValueError("global_batch and group_size must be >= 1")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.global_batch = global_batch
        self.group_size = group_size
        self.seed = seed
        self.encoder = GroupEncoder(tokenizer, bos_id, prompt=prompt,
                                    query_max_len=query_max_len,
                                    passage_max_len=passage_max_len, pad_id=pad_id,
                                    passage_buckets=passage_buckets)
        self.dataset, self.files = load_flag_dataset(paths, cache_dir=cache_dir)
        meta = self.dataset.with_format("numpy", columns=["file", "line", "n_neg"])
        check_negatives(np.asarray(meta["n_neg"]), self.files, np.asarray(meta["file"]),
                         np.asarray(meta["line"]), group_size)
        if len(self.dataset) < global_batch:
            raise ValueError(f"global_batch={global_batch} is larger than the {len(self.dataset)}"
                             " training queries, so an epoch has no full step")
        # Rb is fixed per dataset: the default prompt and every per-row prompt fit.
        self.encoder.reserve_prompts(self.dataset.unique("prompt"))
        self._order_memo: tuple[int, np.ndarray] | None = None

    @property
    def num_queries(self) -> int:
        """N: training queries over all files."""
        return len(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        """Full micro-steps of ``global_batch`` queries per epoch."""
        return self.num_queries // self.global_batch

    def epoch_of(self, step: int) -> int:
        """The epoch a global micro-step falls in."""
        return step // self.steps_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """The query order of an epoch: a permutation [N] int64 drawn from (seed, epoch)."""
        if self._order_memo is None or self._order_memo[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, _ORDER_STREAM])
            self._order_memo = (epoch, rng.permutation(self.num_queries))
        return self._order_memo[1]

    def query_indices(self, step: int, process_index: int = 0,
                      process_count: int = 1) -> np.ndarray:
        """Dataset rows [Q/n] int64 of process ``process_index``'s share of ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
        if self.global_batch % process_count:
            raise ValueError(f"global_batch={self.global_batch} queries cannot be split evenly "
                             f"over {process_count} processes; make it a multiple")
        local = self.global_batch // process_count
        epoch, k = divmod(step, self.steps_per_epoch)
        start = k * self.global_batch + process_index * local
        return self.order(epoch)[start:start + local].astype(np.int64)

    def group(self, index: int, epoch: int,
              row: Mapping[str, Any] | None = None) -> tuple[int, np.ndarray]:
        """(positive index, negative indices [G-1]) of dataset row ``index`` in ``epoch``; the
        draw depends only on (seed, epoch, index)."""
        if row is None:
            row = self.dataset[int(index)]
        rng = np.random.default_rng([self.seed, epoch, int(index), _GROUP_STREAM])
        return sample_group(len(row["pos"]), len(row["neg"]), self.group_size, rng)

    def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> TrainBatch:
        """The host-local batch of global micro-step ``step``: Q/n queries x G candidates.

        Every host gets the same shape: ``Qb`` and ``Rb`` are fixed per dataset, and with
        several passage buckets and several processes each host tokenizes the whole global
        batch so that ``Pb`` fits the *global* longest passage (with one bucket, the default,
        only its own share)."""
        local = self.query_indices(step, process_index, process_count)
        shared_pb = process_count > 1 and len(self.encoder.passage_buckets) > 1
        idx = self.query_indices(step) if shared_pb else local
        epoch = self.epoch_of(step)
        rows = _rows(self.dataset[idx.tolist()])
        chosen = [self.group(int(i), epoch, row) for i, row in zip(idx, rows)]
        pairs, teacher, mask = self.encoder.encode_groups(rows, chosen)
        pb = self.encoder.passage_slots(max(len(e.passage) for e in pairs))
        if shared_pb:
            n, g = len(local), self.group_size
            q0 = process_index * n
            pairs, teacher, mask = (pairs[q0 * g:(q0 + n) * g], teacher[q0:q0 + n],
                                    mask[q0:q0 + n])
        return self.encoder.pack(pairs, teacher, mask, local, passage_slots=pb)


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class DevGroups:
    """Fixed dev groups for dev loss and MRR: ``batch`` holds all Qd queries (R = Qd*G rows,
    query-major, positive first) at one static shape; per row the query id, a document id
    unique within its query, the index into the row's ``pos`` (label 1) or ``neg`` (label 0)
    list, and the label."""

    batch: TrainBatch
    qids: list[str]          # [Qd] "line<N>" (1-based line in the dev file)
    row_qid: list[str]       # [R]
    row_docid: list[str]     # [R] "pos<i>" / "neg<j>", "neg<j>#<k>" for the k-th tiled repeat
    doc_index: np.ndarray    # [R] int32
    label: np.ndarray        # [R] int32

    def qrels(self) -> dict[str, dict[str, int]]:
        """{qid: {docid: 1}} for the positive of each group (ir_measures / evaluate_run)."""
        return {q: {d: 1} for q, d, lab in zip(self.row_qid, self.row_docid, self.label) if lab}

    def run(self, scores: np.ndarray) -> dict[str, dict[str, float]]:
        """{qid: {docid: score}} from scores [R] or [Qd, G] in this batch's row order."""
        s = np.asarray(scores, np.float64).reshape(-1)
        if s.size != len(self.row_qid):
            raise ValueError(f"expected {len(self.row_qid)} scores, got {s.size}")
        out: dict[str, dict[str, float]] = {}
        for q, d, v in zip(self.row_qid, self.row_docid, s):
            out.setdefault(q, {})[d] = float(v)
        return out

    def chunks(self, queries_per_batch: int) -> Iterator[tuple[TrainBatch, int]]:
        """(batch of exactly ``queries_per_batch`` queries, how many are real): the last chunk
        is padded by repeating its last query, so every chunk has the same shape."""
        if queries_per_batch < 1:
            raise ValueError("queries_per_batch must be >= 1")
        n = self.batch.num_queries
        for start in range(0, n, queries_per_batch):
            real = min(queries_per_batch, n - start)
            idx = np.arange(start, start + queries_per_batch).clip(max=n - 1)
            yield self.batch.take(idx), real


def dev_groups(path: PathLike, tokenizer: tokenizers.Tokenizer, bos_id: int, *,
               group_size: int = 16, max_queries: int | None = None, seed: int = 0,
               query_max_len: int = 32, passage_max_len: int = 192,
               prompt: str = DEFAULT_PROMPT, pad_id: int = 0,
               passage_buckets: Sequence[int] | None = None) -> DevGroups:
    """Deterministic dev groups from a FlagEmbedding file: ``pos[0]`` and the first
    ``group_size - 1`` negatives (tiled when short), tokenized as in training. With
    ``max_queries`` a subset drawn from ``seed`` is kept (in file order). ``Pb`` is the
    smallest passage bucket that fits the whole set, so every chunk shares one shape."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    rows = list(iter_rows(path))
    if not rows:
        raise DataError("no queries in the dev file", path=path)
    check_negatives(np.array([r["n_neg"] for r in rows]), [path],
                     np.zeros(len(rows), np.int64), np.array([r["line"] for r in rows]),
                     group_size)
    keep = np.arange(len(rows))
    if max_queries is not None and max_queries < len(rows):
        if max_queries < 1:
            raise ValueError("max_queries must be >= 1")
        keep = np.sort(np.random.default_rng([seed, _ORDER_STREAM]).permutation(
            len(rows))[:max_queries])
    rows = [rows[i] for i in keep]
    encoder = GroupEncoder(tokenizer, bos_id, prompt=prompt, query_max_len=query_max_len,
                           passage_max_len=passage_max_len, pad_id=pad_id,
                           passage_buckets=passage_buckets)
    encoder.reserve_prompts([r["prompt"] for r in rows])
    chosen = [(0, fixed_group(r["n_neg"], group_size)) for r in rows]
    pairs, teacher, mask = encoder.encode_groups(rows, chosen)
    batch = encoder.pack(pairs, teacher, mask, keep.astype(np.int64))
    qids = [f"line{r['line']}" for r in rows]
    row_qid, row_docid, doc_index, label = [], [], [], []
    for q, (pos, negs) in zip(qids, chosen):
        seen: dict[int, int] = {}
        row_qid.append(q)
        row_docid.append(f"pos{pos}")
        doc_index.append(pos)
        label.append(1)
        for j in negs.tolist():
            k = seen.get(j, 0)
            seen[j] = k + 1
            row_qid.append(q)
            row_docid.append(f"neg{j}" if k == 0 else f"neg{j}#{k}")
            doc_index.append(j)
            label.append(0)
    return DevGroups(batch, qids, row_qid, row_docid, np.array(doc_index, np.int32),
                     np.array(label, np.int32))
