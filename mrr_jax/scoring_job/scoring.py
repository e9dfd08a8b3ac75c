"""Scoring units under several plans: one pass per group of plans (:func:`group_plans`), in
length-sorted batches formed inside the given units only."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mrr_jax.core.cascade import Cascade
from mrr_jax.core.plan import Plan
from mrr_jax.core.windows import WindowSpec, aggregate
from mrr_jax.data.ids import check_ids
from mrr_jax.data.records import Doc, Run
from mrr_jax.data.units import Unit, units_from_run
from mrr_jax.inference.windows import WindowStats, encode_windows, window_stats
from mrr_jax.inputs.batching import plan_batches
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.scoring_job.plans import Pass, group_plans, resolve_plans


def score_pass(rr, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]], p: Pass,
               batch_size: int, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Scores of every pair at every exit of pass ``p``: [len(p.exits), n] float32."""
    exits = list(p.exits)
    out = np.zeros((len(exits), len(encoded)), np.float32)
    for idx in batches:
        out[:, idx] = rr.score_encoded([encoded[i] for i in idx], plan=p.plan, exits=exits,
                                       batch_size=batch_size)
        if on_batch is not None:
            on_batch(len(idx))
    return out


@dataclasses.dataclass
class ChunkResult:
    """Scores of a group of units: ``runs[j]`` is plan j's ``{qid: {docid: score}}`` (for a
    cascade: the documents that stage j scored last, with that stage's scores; ``stage_pairs``
    then counts the pairs each stage scored). With windows: ``windows``, their cost under the
    first plan, and ``window_counts``, the windows of each pair (units' order)."""

    runs: list[Run]
    pairs: int
    truncated: int
    stage_pairs: list[int] | None = None
    windows: WindowStats | None = None
    window_counts: list[int] | None = None


def score_units(rr, units: Sequence[Unit], plans: Sequence[Plan], *, batch_size: int = 32,
                max_length: int = 512, query_max_length: int | None = None,
                tokens_per_batch: int | None = None,
                on_batch: Callable[[int], None] | None = None,
                windows: WindowSpec | str | None = None) -> ChunkResult:
    """Scores every (query, candidate) pair of ``units`` under each resolved plan of ``plans``,
    in as few passes as :func:`group_plans` allows. ``on_batch(rows)`` is called per batch.

    ``windows``: each pair is scored as its windows (``inference.windows``; the units' windows
    share batches) and gets their aggregate; ``on_batch(pairs)`` is then called per pass."""
    pairs = [(u.query, p) for u in units for p in u.passages]
    keys = [(u.qid, d) for u in units for d in u.docids]
    ws = encode_windows(rr, pairs, windows, max_length, query_max_length) \
        if windows is not None and pairs else None
    encoded = ws.windows if ws is not None else \
        rr.encode(pairs, max_length, query_max_length) if pairs else []
    batches = plan_batches(encoded, batch_size, tokens_per_batch)
    runs: list[Run] = [{} for _ in plans]
    for p in group_plans(plans):
        scores = score_pass(rr, encoded, batches, p, batch_size, None if ws else on_batch)
        if ws is not None:
            scores = aggregate(scores, ws.owner, ws.documents, ws.spec.how)
            if on_batch is not None:
                on_batch(len(pairs))
        for j, k in p.targets:
            row = scores[p.exits.index(k)]
            run = runs[j]
            for (qid, docid), s in zip(keys, row):
                run.setdefault(qid, {})[docid] = float(s)
    if ws is None:
        return ChunkResult(runs, len(pairs), sum(e.truncated for e in encoded))
    return ChunkResult(runs, len(pairs), int(ws.cut.sum()), windows=window_stats(
        rr, ws, plans[0]), window_counts=ws.counts.tolist())


def score_units_cascade(rr, units: Sequence[Unit], cascade: Cascade, *, batch_size: int = 32,
                        max_length: int = 512, query_max_length: int | None = None,
                        tokens_per_batch: int | None = None,
                        on_batch: Callable[[int], None] | None = None) -> ChunkResult:
    """Runs resolved ``cascade`` over ``units`` (each unit's candidates in first-stage order;
    ``inference.cascade.run_cascade``). ``runs[s]``: the documents stage ``s`` scored last,
    with their stage-``s`` scores; ``pairs``: the pairs scored over all stages."""
    from mrr_jax.inference.cascade import run_cascade

    encoded = [rr.encode([(u.query, p) for p in u.passages], max_length, query_max_length)
               if u.passages else [] for u in units]
    results, stats = run_cascade(rr, encoded, cascade, batch_size=batch_size,
                                 tokens_per_batch=tokens_per_batch)
    runs: list[Run] = [{} for _ in cascade.stages]
    for u, r in zip(units, results):
        for d, docid in enumerate(u.docids):
            if r.stage[d] >= 0:
                runs[r.stage[d]].setdefault(u.qid, {})[docid] = float(r.scores[d])
    if on_batch is not None:
        on_batch(sum(stats.pairs))
    return ChunkResult(runs, sum(stats.pairs), sum(e.truncated for enc in encoded for e in enc),
                       stats.pairs)


def cascade_order(stage_runs: Sequence[Run], qid: str) -> list[tuple[str, int, float]]:
    """One query's final cascade ranking from per-stage runs (``ChunkResult.runs`` of a
    cascade): ``[(docid, stage, score)]``, the last stage's documents by score, then each
    earlier stage's (ties by docid, as ``trec.ranking`` orders them)."""
    from mrr_jax.data import trec

    out = []
    for s in range(len(stage_runs) - 1, -1, -1):
        docs = stage_runs[s].get(qid, {})
        out += [(d, s, v) for d, v in trec.ranking(docs)]
    return out


def rerank(rr, queries: Mapping[str, str], corpus: Mapping[str, Doc | str],
           run: Mapping[str, Mapping[str, float]], plans: Sequence[Plan | str], top_k: int = 100,
           *, batch_size: int = 32, max_length: int = 512, query_max_length: int | None = None,
           tokens_per_batch: int | None = None, on_missing: str = "error",
           progress: bool = False, windows: WindowSpec | str | None = None
           ) -> dict[str, Run]:
    """Re-ranks the ``top_k`` best documents of each query of ``run`` under each plan, in memory.

    ``corpus``: ``{docid: Doc | passage}``; unknown ids raise :class:`DataError`
    (``on_missing="warn"`` drops them); ``windows`` as in :func:`score_units`. Returns
    ``{str(resolved plan): run}`` in the order of ``plans`` (a plan given twice appears
    once)."""
    resolved = resolve_plans([rr.resolve_plan(p) for p in plans], rr.cfg.num_layers)
    checked = check_ids(run, corpus, queries, on_missing=on_missing).run
    units = units_from_run(checked, queries, corpus, top_k)
    total = sum(len(u.docids) for u in units) * len(group_plans(resolved))
    with progress_bar(total, 0, progress, "rerank") as bar:
        result = score_units(rr, units, resolved, batch_size=batch_size, max_length=max_length,
                             query_max_length=query_max_length,
                             tokens_per_batch=tokens_per_batch, on_batch=bar.update,
                             windows=windows)
    return {str(p): r for p, r in zip(resolved, result.runs)}


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar on stderr counting pairs (disabled unless ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pair", desc=desc, disable=not enabled,
                dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
