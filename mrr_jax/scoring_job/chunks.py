"""The job's work: units read from the inputs, cut into chunks, chunks into shards; and the
chunk files.

Units are sorted by qid (:func:`mrr_jax.data.trec.qid_key`) and grouped, in that order, into
chunks of about ``--chunk-pairs`` pairs (a query is never split; :func:`chunk_units`). Shards
take contiguous ranges of chunks balanced by pairs (:func:`cut_job`). A chunk file holds the
chunk's scores as TREC lines, tag column ``p<j>`` for the j-th plan; with ``--windows``, a
chunk's window counts go beside it (:func:`window_filename`).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mrr_jax.data import beir, candidates, trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import atomic_write
from mrr_jax.data.ids import check_ids
from mrr_jax.data.records import Doc, Run
from mrr_jax.data.units import Unit, units_from_run
from mrr_jax.scoring_job.config import JobConfig


def chunk_units(units: Sequence[Unit], chunk_pairs: int) -> list[list[Unit]]:
    """Consecutive groups of units, each closed once it holds >= ``chunk_pairs`` pairs."""
    chunks: list[list[Unit]] = []
    cur: list[Unit] = []
    pairs = 0
    for u in units:
        cur.append(u)
        pairs += len(u.docids)
        if pairs >= chunk_pairs:
            chunks.append(cur)
            cur, pairs = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def _pairs(units: Sequence[Unit]) -> int:
    return sum(len(u.docids) for u in units)


def _cuts(offsets: Sequence[int], num_shards: int) -> list[int]:
    """Where each shard starts: indices into ``offsets`` (pair counts before each possible cut,
    from 0 to the total), the one nearest ``i * total / num_shards`` for shard ``i`` (ties to
    the earlier), kept increasing so that every shard gets at least one item when there are
    ``num_shards`` items or more; with fewer, shard ``i`` takes item ``i`` and the last shards
    are empty."""
    items, total = len(offsets) - 1, offsets[-1]
    if items < num_shards:
        return [min(i, items) for i in range(num_shards)] + [items]
    cuts = [0]
    for i in range(1, num_shards):
        j = bisect.bisect_left(offsets, i * total / num_shards)
        if j > 0 and (j == len(offsets) or (offsets[j] * num_shards - i * total
                                            >= i * total - offsets[j - 1] * num_shards)):
            j -= 1
        cuts.append(min(max(j, cuts[-1] + 1), items - (num_shards - i)))
    return [*cuts, items]


def cut_job(units: Sequence[Unit], chunk_pairs: int,
            num_shards: int) -> tuple[list[list[Unit]], list[range]]:
    """The job's chunks and the contiguous range of them each of ``num_shards`` shards takes,
    balanced by pairs (``P``: the job's pairs; a query is never split).

    The chunks are those of :func:`chunk_units` when every shard's share ``P / n`` is at least
    ``chunk_pairs`` and there are at least ``n`` of them: shard ``i`` then starts at the chunk
    boundary nearest ``i * P / n``, and, every pair meeting the batches it meets in a
    one-shard job, the merged run is byte-identical for any such ``n``. A smaller job is cut
    at the query boundaries nearest ``i * P / n`` instead, each shard's queries then chunked
    by :func:`chunk_units`; a pair may then meet other batches than in a one-shard job, and its
    score differ in the last digits. A shard is empty only when the job has fewer queries than
    shards (shard ``i`` takes query ``i``)."""
    grid = chunk_units(units, chunk_pairs)
    offsets = list(itertools.accumulate((_pairs(c) for c in grid), initial=0))
    if num_shards == 1 or (len(grid) >= num_shards
                           and offsets[-1] >= chunk_pairs * num_shards):
        cuts = _cuts(offsets, num_shards)
        return grid, [range(a, b) for a, b in itertools.pairwise(cuts)]
    at = _cuts(list(itertools.accumulate((len(u.docids) for u in units), initial=0)),
               num_shards)
    chunks: list[list[Unit]] = []
    ranges = []
    for a, b in itertools.pairwise(at):
        first = len(chunks)
        chunks += chunk_units(units[a:b], chunk_pairs)
        ranges.append(range(first, len(chunks)))
    return chunks, ranges


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Inputs:
    """The job's units and what reading them skipped."""

    units: list[Unit]
    skipped_entries: int = 0


def load_inputs(cfg: JobConfig) -> Inputs:
    """Read the run (or candidates), the queries and the corpus into units."""
    corpus = beir.load_corpus(cfg.corpus) if cfg.corpus else None
    if cfg.candidates:
        units, skipped = _candidate_units(cfg, corpus)
    else:
        queries = beir.load_queries(cfg.queries)
        checked = check_ids(cfg.run, corpus, queries, on_missing=cfg.on_missing)
        units = units_from_run(checked.run, queries, corpus, cfg.top_k)
        skipped = checked.skipped_entries
    if cfg.max_queries is not None:
        units = units[:cfg.max_queries]
    if not units:
        raise DataError("no query with candidates to score",
                        path=cfg.candidates or cfg.run)
    return Inputs(units, skipped)


def _candidate_units(cfg: JobConfig, corpus: Mapping[str, Doc] | None) -> tuple[list[Unit], int]:
    items = candidates.load_candidates(cfg.candidates)
    need = {c.qid: {x.docid: 0.0 for x in c.candidates if x.text is None}
            for c in items.values()}
    need = {q: d for q, d in need.items() if d}
    known: Mapping[str, Doc] = corpus or {}
    skipped = 0
    if need:
        if corpus is None:
            q = next(iter(need))
            raise DataError(f"candidate {next(iter(need[q]))!r} of query {q!r} has no text; "
                            "give --corpus to look candidates up", path=cfg.candidates,
                            field="text")
        skipped = check_ids(need, corpus, on_missing=cfg.on_missing).skipped_entries
    units = []
    for qid in sorted(items, key=trec.qid_key):
        item = items[qid]
        cands = [c for c in item.candidates if c.text is not None or c.docid in known]
        if all(c.score is not None for c in cands):  # first-stage order, else file order
            order = {d: i for i, (d, _) in enumerate(trec.ranking(
                {c.docid: c.score for c in cands}))}
            cands.sort(key=lambda c: order[c.docid])
        cands = cands[:cfg.top_k]
        if cands:
            units.append(Unit(qid, item.query, tuple(c.docid for c in cands), tuple(
                c.text if c.text is not None else known[c.docid].passage for c in cands)))
    return units, skipped


# ----------------------------------------------------------------------------- chunk files


def chunk_filename(k: int) -> str:
    """The file of chunk ``k`` in its shard's folder."""
    return f"chunk-{k:05d}.trec"


def write_chunk(path: Path, units: Sequence[Unit], runs: Sequence[Run]) -> None:
    """A chunk's scores as TREC lines, tag ``p<j>`` for plan j, written atomically."""
    with atomic_write(path) as f:
        for j, run in enumerate(runs):
            for u in units:
                for rank, (docid, score) in enumerate(trec.ranking(run[u.qid]), start=1):
                    f.write(f"{u.qid} Q0 {docid} {rank} {score!r} p{j}\n")


def window_filename(k: int) -> str:
    """The file of chunk ``k``'s window counts (jobs with ``--windows``)."""
    return f"chunk-{k:05d}.windows.tsv"


def write_window_counts(path: Path, units: Sequence[Unit], counts: Sequence[int]) -> None:
    """``qid, docid, windows`` per pair of ``units`` (their order), written atomically."""
    keys = [(u.qid, d) for u in units for d in u.docids]
    if len(keys) != len(counts):
        raise ValueError(f"{len(counts)} window counts for {len(keys)} pairs")
    with atomic_write(path) as f:
        f.writelines(f"{q}\t{d}\t{n}\n" for (q, d), n in zip(keys, counts))


def read_chunk(path: Path, num_plans: int) -> list[Run]:
    """Inverse of :func:`write_chunk`: ``runs[j]`` for each plan."""
    runs: list[Run] = [{} for _ in range(num_plans)]
    for r in _iter_chunk(path):
        m = re.fullmatch(r"p(\d+)", r[3])
        if not m or int(m.group(1)) >= num_plans:
            raise DataError(f"unexpected tag {r[3]!r}", path=path, field="tag")
        docs = runs[int(m.group(1))].setdefault(r[0], {})
        if r[1] in docs:
            raise DataError(f"({r[0]!r}, {r[1]!r}) scored twice", path=path, field="docid")
        docs[r[1]] = r[2]
    return runs


def _iter_chunk(path: Path) -> Iterator[tuple[str, str, float, str]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            cols = text.split()
            if len(cols) != 6:
                raise DataError("expected 6 columns", path=path, line=line, field="columns")
            yield cols[0], cols[2], float(cols[4]), cols[5]
