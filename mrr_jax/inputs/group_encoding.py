"""Query groups to static-shape token batches (docs/method.md §1.2 and §5.2, docs/design.md §3): the
group draws, :class:`TrainBatch` and :class:`GroupEncoder`; used by :mod:`mrr_jax.inputs.groups`.

Groups (the reference's ``data.py``). Each query gets one positive (a uniform random choice)
and ``group_size - 1`` negatives sampled without replacement; when the query has fewer
negatives than that, the list is first tiled ``ceil(n / len(neg))`` times and then sampled.
Teacher scores follow the chosen texts; a query has a teacher only when it has *both*
``pos_scores`` and ``neg_scores`` (``teacher_mask``), otherwise its teacher row is 0 and masked
out -- a uniform teacher is never made up. A per-row ``prompt`` replaces the default prompt.
A query without negatives when ``group_size > 1`` is a ``DataError`` on field ``neg``.

Tokens (the reference's training truncation). ``"A: " + query`` is cut to ``query_max_len``
tokens; ``"B: " + passage`` is cut to ``passage_max_len + query_max_len // 2`` tokens and then
so that the whole sequence -- query, passage and prompt segments -- fits in
``query_max_len + passage_max_len`` tokens (224 with the defaults); the prompt is never cut.
Rows are laid out in the model's three regions (see :func:`mrr_jax.core.forward.score_forward`),
left-aligned and padded with ``pad_id``, at static widths so only a few XLA programs compile:
``Qb`` is fixed (the longest possible query segment, bucketed), ``Rb`` is fixed per dataset
(the bucket of its longest prompt segment: the default prompt's unless rows carry longer ones),
and ``Pb`` is the smallest of ``passage_buckets`` that holds the longest passage segment of the
*global* batch, so all hosts agree (default: a single bucket, so one program in all).

Shapes (einsum letters): ``Q`` queries per host batch, ``G`` group size, ``R = Q*G`` rows,
query-major (rows ``[i*G, (i+1)*G)`` are query ``i``'s group, its positive first); ``Qb``,
``Pb``, ``Rb`` region slots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tokenizers

from mrr_jax.inputs.batching import bucket_length
from mrr_jax.inputs.template import DEFAULT_PROMPT, EncodedPair, PairTemplate

__all__ = ["GroupEncoder", "TrainBatch", "fixed_group", "sample_group", "teacher_scores"]


def sample_group(n_pos: int, n_neg: int, group_size: int,
                 rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """The reference's draw: (positive index, negative indices [group_size-1] int64).

    One positive uniformly; ``group_size - 1`` negatives without replacement from the
    negative list, tiled ``ceil((group_size-1)/n_neg)`` times first when it is too short (so
    each negative appears at most that many times)."""
    if n_pos < 1:
        raise ValueError("a query needs at least one positive")
    pos = int(rng.integers(n_pos))
    need = group_size - 1
    if need == 0:
        return pos, np.zeros(0, np.int64)
    if n_neg < 1:
        raise ValueError(f"no negatives to fill a group of {group_size}")
    pool = np.tile(np.arange(n_neg, dtype=np.int64), -(-need // n_neg))
    return pos, pool[rng.choice(pool.size, size=need, replace=False)]


def fixed_group(n_neg: int, group_size: int) -> np.ndarray:
    """The dev-set draw, no randomness: the first ``group_size - 1`` negatives (the list tiled
    when short), as indices [group_size-1] int64; the positive is ``pos[0]``."""
    need = group_size - 1
    if need == 0:
        return np.zeros(0, np.int64)
    if n_neg < 1:
        raise ValueError(f"no negatives to fill a group of {group_size}")
    return np.tile(np.arange(n_neg, dtype=np.int64), -(-need // n_neg))[:need]


def teacher_scores(row: Mapping[str, Any], pos: int, negs: np.ndarray) -> list[float] | None:
    """Teacher scores of the chosen texts, or None unless the row has both score lists."""
    ps, ns = row["pos_scores"], row["neg_scores"]
    if ps is None or ns is None:
        return None
    return [ps[pos], *(ns[int(j)] for j in negs)]


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TrainBatch:
    """One host-local batch of ``Q`` query groups of ``G`` candidates (``R = Q*G`` rows,
    query-major, positive first in each group).

    q_ids [R, Qb], p_ids [R, Pb], r_ids [R, Rb] int32: the query ([bos] "A: " query "\\n"),
    passage ("B: " passage) and prompt ("\\n" prompt) segments, left-aligned, padded with
    ``pad_id``; q_len, p_len, r_len [R] int32: their real lengths. teacher [Q, G] float32:
    external teacher scores of the chosen texts (0 where absent); teacher_mask [Q] bool: the
    query has teacher scores. truncated [R] bool: the pair was cut. query_index [Q] int64: the
    dataset row of each query (metadata, not a model input).
    """

    q_ids: np.ndarray
    p_ids: np.ndarray
    r_ids: np.ndarray
    q_len: np.ndarray
    p_len: np.ndarray
    r_len: np.ndarray
    teacher: np.ndarray
    teacher_mask: np.ndarray
    truncated: np.ndarray
    query_index: np.ndarray

    @property
    def group_size(self) -> int:
        """G."""
        return self.teacher.shape[1]

    @property
    def num_queries(self) -> int:
        """Q."""
        return self.teacher.shape[0]

    @property
    def n_truncated(self) -> int:
        """How many of the R pairs were truncated."""
        return int(self.truncated.sum())

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The compiled shape: (R, Qb, Pb, Rb)."""
        return (self.q_ids.shape[0], self.q_ids.shape[1], self.p_ids.shape[1],
                self.r_ids.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The model inputs: q_ids, p_ids, r_ids, q_len, p_len, r_len, teacher, teacher_mask."""
        return {k: getattr(self, k) for k in ("q_ids", "p_ids", "r_ids", "q_len", "p_len",
                                               "r_len", "teacher", "teacher_mask")}

    def take(self, queries: Sequence[int] | np.ndarray) -> TrainBatch:
        """The batch of the given query positions (repeats allowed, e.g. to pad a last chunk),
        at the same region widths."""
        q = np.asarray(queries, np.int64)
        g = self.group_size
        rows = (q[:, None] * g + np.arange(g)).reshape(-1)
        per_row = {k: getattr(self, k)[rows] for k in ("q_ids", "p_ids", "r_ids", "q_len",
                                                      "p_len", "r_len", "truncated")}
        return replace(self, **per_row, teacher=self.teacher[q],
                       teacher_mask=self.teacher_mask[q], query_index=self.query_index[q])


class GroupEncoder:
    """Tokenizes query groups into the static region layout (see the module docstring).

    ``tokenizer``/``bos_id``: as from :func:`inputs.template.load_tokenizer`. ``prompt``: the
    default prompt (a row's own ``prompt`` replaces it). ``passage_buckets``: the allowed
    passage widths ``Pb`` (default: one bucket holding the longest possible passage segment,
    ``passage_max_len + query_max_len // 2`` bucketed); the largest must hold that maximum.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, bos_id: int, *,
                 prompt: str = DEFAULT_PROMPT, query_max_len: int = 32,
                 passage_max_len: int = 192, pad_id: int = 0,
                 passage_buckets: Sequence[int] | None = None) -> None:
        if bos_id is None:
            raise ValueError("a BOS token id is needed (the template starts with [bos])")
        if query_max_len < 1 or passage_max_len < 1:
            raise ValueError("query_max_len and passage_max_len must be >= 1")
        self.tokenizer = tokenizer
        self.bos_id = int(bos_id)
        self.query_max_len = query_max_len
        self.passage_max_len = passage_max_len
        self.pad_id = int(pad_id)
        self.default_prompt = prompt
        self._templates: dict[str, PairTemplate] = {}
        default = self.template(None)
        # Longest possible segments: [bos] + query tokens + sep; the passage pre-cut.
        self.max_query_segment = 1 + query_max_len + len(default.sep)
        self.max_passage_segment = passage_max_len + query_max_len // 2
        self.query_slots = bucket_length(self.max_query_segment)
        self.prompt_slots = bucket_length(len(default.prompt))
        buckets = ((bucket_length(self.max_passage_segment),) if passage_buckets is None
                   else tuple(sorted({int(b) for b in passage_buckets})))
        if not buckets or buckets[0] < 1:
            raise ValueError(f"passage_buckets must be positive widths, got {passage_buckets!r}")
        if buckets[-1] < self.max_passage_segment:
            raise ValueError(
                f"the largest passage bucket ({buckets[-1]}) must hold the longest passage "
                f"segment, passage_max_len + query_max_len // 2 = {self.max_passage_segment}")
        self.passage_buckets = buckets

    def template(self, prompt: str | None) -> PairTemplate:
        """The (cached) template of a prompt; ``None`` is the default prompt."""
        prompt = self.default_prompt if prompt is None else prompt
        t = self._templates.get(prompt)
        if t is None:
            if len(self._templates) >= 256:  # bound the memo when many rows carry prompts
                self._templates.clear()
            t = self._templates[prompt] = PairTemplate(self.tokenizer, self.bos_id, prompt)
        return t

    def encode(self, groups: Sequence[tuple[str, Sequence[str], str | None]]
               ) -> list[EncodedPair]:
        """(query, candidate texts, prompt or None) per query -> the flat, query-major pairs."""
        by_prompt: dict[str | None, list[int]] = {}
        flat: list[tuple[str, str, str | None]] = [
            (q, p, prompt) for q, texts, prompt in groups for p in texts]
        for i, (_, _, prompt) in enumerate(flat):
            by_prompt.setdefault(prompt, []).append(i)
        out: list[EncodedPair | None] = [None] * len(flat)
        total = self.query_max_len + self.passage_max_len
        for prompt, idx in by_prompt.items():
            t = self.template(prompt)
            max_length = max(total - len(t.prompt), 1)
            enc = t.encode([(flat[i][0], flat[i][1]) for i in idx], max_length=max_length,
                           query_max_length=self.query_max_len)
            for i, e in zip(idx, enc):
                if len(e.passage) > self.max_passage_segment:
                    e = EncodedPair(e.query, e.passage[:self.max_passage_segment], e.prompt,
                                    True)
                out[i] = e
        return out  # type: ignore[return-value]

    def passage_slots(self, longest: int) -> int:
        """Pb: the smallest passage bucket that holds ``longest`` tokens."""
        for b in self.passage_buckets:
            if b >= longest:
                return b
        raise ValueError(f"a passage segment of {longest} tokens exceeds every passage bucket "
                         f"{self.passage_buckets}")

    def pack(self, pairs: Sequence[EncodedPair], teacher: np.ndarray,
             teacher_mask: np.ndarray, query_index: np.ndarray,
             passage_slots: int | None = None) -> TrainBatch:
        """Lay ``pairs`` ([R], query-major) out at the static widths; ``passage_slots`` forces
        ``Pb`` (default: the smallest bucket that fits)."""
        regions: dict[str, np.ndarray] = {}
        longest_prompt = max(len(e.prompt) for e in pairs)
        widths = {
            "query": self.query_slots,
            "passage": passage_slots or self.passage_slots(max(len(e.passage) for e in pairs)),
            "prompt": max(self.prompt_slots, bucket_length(longest_prompt)),  # reserved: fixed
        }
        for name, key in (("query", "q"), ("passage", "p"), ("prompt", "r")):
            ids = np.full((len(pairs), widths[name]), self.pad_id, np.int32)
            lens = np.zeros(len(pairs), np.int32)
            for b, e in enumerate(pairs):
                seg = getattr(e, name)
                if len(seg) > widths[name]:
                    raise ValueError(f"row {b}: {name} segment of {len(seg)} tokens exceeds "
                                     f"its {widths[name]} slots")
                ids[b, :len(seg)] = seg
                lens[b] = len(seg)
            regions[key + "_ids"], regions[key + "_len"] = ids, lens
        return TrainBatch(**regions, teacher=np.asarray(teacher, np.float32),
                          teacher_mask=np.asarray(teacher_mask, bool),
                          truncated=np.array([e.truncated for e in pairs], bool),
                          query_index=np.asarray(query_index, np.int64))

    def reserve_prompts(self, prompts: Sequence[str | None]) -> int:
        """Widen ``Rb`` once so that every given prompt fits (rows whose prompt replaces the
        default); returns the new ``Rb``. Called with all of a dataset's prompts, it keeps
        ``Rb`` fixed for the whole dataset."""
        for prompt in set(prompts):
            if prompt is not None:
                self.prompt_slots = max(self.prompt_slots,
                                        bucket_length(len(self.template(prompt).prompt)))
        return self.prompt_slots

    def encode_groups(self, rows: Sequence[Mapping[str, Any]],
                      chosen: Sequence[tuple[int, np.ndarray]]
                      ) -> tuple[list[EncodedPair], np.ndarray, np.ndarray]:
        """``rows`` [Q] dataset rows, ``chosen`` [Q] (positive index, negative indices [G-1])
        -> (pairs [Q*G] query-major, teacher [Q, G] float32, teacher_mask [Q] bool)."""
        g = 1 + len(chosen[0][1])
        teacher = np.zeros((len(rows), g), np.float32)
        mask = np.zeros(len(rows), bool)
        groups = []
        for i, (row, (pos, negs)) in enumerate(zip(rows, chosen)):
            groups.append((row["query"], [row["pos"][pos], *(row["neg"][int(j)] for j in negs)],
                           row["prompt"]))
            t = teacher_scores(row, pos, negs)
            if t is not None:
                teacher[i], mask[i] = t, True
        return self.encode(groups), teacher, mask
