"""Training input pipeline: FlagEmbedding JSONL -> deterministic, host-sharded, static-shape
batches of query groups (METHOD.md §1.2 and §5.2, DESIGN.md §3).

Reading. Files are read through HF ``datasets`` (``Dataset.from_generator``) over our own
validating reader (:func:`mrr_jax.data.flag.iter_flag`), so every bad line raises a
:class:`~mrr_jax.data.errors.DataError` naming the file, the 1-based line and the field
(missing ``neg``, an empty text, scores whose length differs from their texts, a NaN score, an
empty ``prompt``). The generator's arguments hold each file's size, mtime and SHA-256, so the
HF cache key changes whenever a file's content does; by default the cache itself lives in a
temporary folder that is deleted once the rows are in memory, so a stale cache is impossible
either way. With ``cache_dir`` the Arrow files persist there (memory-mapped) and are reused only
for byte-identical inputs.

Groups (the reference's ``data.py``). Each query gets one positive (a uniform random choice)
and ``group_size - 1`` negatives sampled without replacement; when the query has fewer
negatives than that, the list is first tiled ``ceil(n / len(neg))`` times and then sampled.
Teacher scores follow the chosen texts; a query has a teacher only when it has *both*
``pos_scores`` and ``neg_scores`` (``teacher_mask``), otherwise its teacher row is 0 and masked
out -- a uniform teacher is never made up. A per-row ``prompt`` replaces the default prompt.
A query without negatives when ``group_size > 1`` is a ``DataError`` on field ``neg``.

Order. The queries of epoch ``e`` are a permutation drawn from ``(seed, e)``; global
micro-step ``s`` (counted from 0 across epochs, ``e = s // steps_per_epoch``, the last partial
batch of an epoch is dropped) takes positions ``[k*Q, (k+1)*Q)`` of that permutation with
``k = s % steps_per_epoch``, and process ``p`` of ``n`` takes the contiguous slice
``[p*Q/n, (p+1)*Q/n)`` of those. A query's group draw depends only on ``(seed, epoch, query
row)``. So ``batch(step, p, n)`` is a pure function of its arguments: the data position is the
step number, and resuming is calling it with the next step on any number of hosts.

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

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers

from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike, iter_lines
from mrr_jax.data.flag import iter_flag
from mrr_jax.inputs.batching import bucket_length
from mrr_jax.inputs.template import DEFAULT_PROMPT, EncodedPair, PairTemplate

__all__ = ["DevGroups", "GroupEncoder", "TrainBatch", "TrainData", "dev_groups", "fixed_group",
           "load_flag_dataset", "sample_group"]

# Stream tags that keep the epoch-order and group-sampling random streams apart.
_ORDER_STREAM = 0
_GROUP_STREAM = 1

_DATA_SUFFIXES = (".jsonl", ".jsonl.gz")


# ----------------------------------------------------------------------------- reading


def _files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Absolute file list: each path as given, a directory as its ``*.jsonl[.gz]`` files
    (recursive, sorted)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("no training data files given")
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser().resolve()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.name.endswith(_DATA_SUFFIXES))
            if not found:
                raise FileNotFoundError(f"{p}: no *.jsonl or *.jsonl.gz files in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _file_key(path: Path) -> dict[str, Any]:
    """What identifies one version of a file in the HF cache key: path, size, mtime, SHA-256."""
    from mrr_jax.weights.assets import sha256_file

    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": sha256_file(path)}


def _iter_rows(path: PathLike, file_index: int = 0) -> Iterator[dict[str, Any]]:
    """Validated rows of one FlagEmbedding file as plain dicts, with ``file`` (index), ``line``
    (1-based) and ``n_neg``. ``iter_flag`` (strict mode) yields exactly one row per non-blank
    line or raises, so pairing it with the non-blank line numbers locates every row."""
    lines = (n for n, text in iter_lines(path) if text.strip())
    for row, line in zip(iter_flag(path, on_empty="error"), lines):
        if row.prompt is not None and not row.prompt.strip():
            raise DataError("empty prompt (leave the field out to use the default)",
                            path=path, line=line, field="prompt")
        yield {"query": row.query, "pos": row.pos, "neg": row.neg,
               "pos_scores": row.pos_scores, "neg_scores": row.neg_scores,
               "prompt": row.prompt, "file": file_index, "line": line, "n_neg": len(row.neg)}


def _generate(files: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``Dataset.from_generator`` body; ``files`` carries size/mtime/SHA-256 only so that they
    enter the cache key. ``datasets`` shards list arguments (one call per file), so each file
    carries its own ``index``."""
    for f in files:
        yield from _iter_rows(f["path"], f["index"])


def _features():
    import datasets

    text, num = datasets.Value("string"), datasets.Value("float64")
    return datasets.Features({
        "query": text, "pos": datasets.List(text), "neg": datasets.List(text),
        "pos_scores": datasets.List(num), "neg_scores": datasets.List(num), "prompt": text,
        "file": datasets.Value("int32"), "line": datasets.Value("int64"),
        "n_neg": datasets.Value("int32")})


def load_flag_dataset(paths: PathLike | Sequence[PathLike], *,
                      cache_dir: PathLike | None = None):
    """Read and validate FlagEmbedding JSONL files into one HF ``datasets.Dataset``.

    Columns: ``query`` str, ``pos``/``neg`` list[str], ``pos_scores``/``neg_scores``
    list[float] or None, ``prompt`` str or None, ``file`` (index into the resolved file list),
    ``line`` (1-based) and ``n_neg``. ``paths``: one
    or more files, or folders (their ``*.jsonl[.gz]`` files, sorted). Returns
    ``(dataset, files)`` with ``files`` the resolved paths ``file`` indexes into.

    ``cache_dir=None`` builds in a temporary folder, loads the rows into memory and deletes
    the folder (nothing is reused, nothing can be stale). With ``cache_dir`` the Arrow files
    stay there, memory-mapped, keyed by every file's path, size, mtime and SHA-256.
    """
    import datasets

    files = _files(paths)
    kwargs = {"files": [{"index": i, **_file_key(f)} for i, f in enumerate(files)]}
    try:
        if cache_dir is not None:
            ds = datasets.Dataset.from_generator(_generate, features=_features(),
                                                 cache_dir=str(cache_dir), gen_kwargs=kwargs)
            return ds, files
        with tempfile.TemporaryDirectory(prefix="mrr_jax_flag_") as tmp:
            ds = datasets.Dataset.from_generator(_generate, features=_features(),
                                                 cache_dir=tmp, keep_in_memory=True,
                                                 gen_kwargs=kwargs)
        return ds, files
    except datasets.exceptions.DatasetGenerationError as e:
        cause = _data_error(e)
        if cause is None:
            raise
        raise cause from None  # our located error, not HF's generic wrapper


def _data_error(e: BaseException) -> DataError | None:
    """The DataError that a ``datasets`` wrapper exception was raised from, if any."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, DataError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _check_negatives(n_neg: np.ndarray, files: Sequence[PathLike], file_idx: np.ndarray,
                     lines: np.ndarray, group_size: int) -> None:
    """A query without negatives cannot fill a group of ``group_size > 1``."""
    if group_size <= 1:
        return
    bad = np.flatnonzero(n_neg == 0)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size} such queries in all)" if bad.size > 1 else ""
        raise DataError(f"no negatives, but group_size={group_size} needs {group_size - 1} per "
                        f"query{more}; add negatives or train with group_size=1",
                        path=files[int(file_idx[i])], line=int(lines[i]), field="neg")


# ----------------------------------------------------------------------------- groups


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


def _teacher(row: Mapping[str, Any], pos: int, negs: np.ndarray) -> list[float] | None:
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
            t = _teacher(row, pos, negs)
            if t is not None:
                teacher[i], mask[i] = t, True
        return self.encode(groups), teacher, mask


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
        _check_negatives(np.asarray(meta["n_neg"]), self.files, np.asarray(meta["file"]),
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
    rows = list(_iter_rows(path))
    if not rows:
        raise DataError("no queries in the dev file", path=path)
    _check_negatives(np.array([r["n_neg"] for r in rows]), [path],
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
