"""Ranking many queries at once (``Reranker.rank_batch`` and ``Reranker.rank``): pairs of all
queries share length-sorted batches; a cascade runs over groups of queries
(``inference.cascade.run_cascade``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrr_jax.core.cascade import Cascade
from mrr_jax.core.plan import Plan
from mrr_jax.inference import rank_args
from mrr_jax.inference.windows import score_windows


def resolve_cascade(rr, cascade: Cascade | str) -> Cascade:
    """:meth:`mrr_jax.Reranker.resolve_cascade` (see there)."""
    if isinstance(cascade, str):
        cascade = Cascade.parse(cascade)
    if not isinstance(cascade, Cascade):
        raise TypeError(f"cascade must be a Cascade or its text like 'depth=12@100 > "
                        f"full@20', got {type(cascade).__name__}")
    c = cascade.resolve(rr.cfg.num_layers)
    for s in c.stages:
        rr.resolve_plan(s.plan)
    return c


def rank_requests(rr, requests: Sequence[tuple[str, Sequence[str]]], *,
                  plan: Plan | str | None = None, cascade: Cascade | str | None = None,
                  top_k: int | None = None,
                  first_stage_scores: Sequence[Sequence[float]] | None = None,
                  fuse: float | None = None, fuse_norm: str = "minmax", batch_size: int = 32,
                  max_length: int = 512, query_max_length: int | None = None,
                  tokens_per_batch: int | None = None, queries_in_flight: int | None = None,
                  windows=None) -> list[list[dict]]:
    """:meth:`mrr_jax.Reranker.rank_batch`. Pairs of all requests share length-sorted
    batches, so batches stay full across queries (with a cascade, stage by stage). A cascade
    holds a stage's hidden states until the stage ends, so it runs over groups of
    ``queries_in_flight`` requests (default: as many as fill 16 batches at its first stage).
    ``rr.last_truncated`` counts the cut pairs. ``windows`` (with a plan only): every
    document scored as windows (:func:`mrr_jax.inference.windows.score_windows`), all requests'
    windows sharing batches."""
    if plan is not None and cascade is not None:
        raise ValueError("rank: pass plan= or cascade=, not both")
    if cascade is not None and fuse is not None:
        raise ValueError("rank: fusion (fuse=) applies to a plan's scores, not to a "
                         "cascade's")
    if cascade is not None and windows is not None:
        raise ValueError("rank: windows= applies to a plan's scores, not to a cascade's")
    if isinstance(requests, tuple) and len(requests) == 2 and isinstance(requests[0], str):
        raise TypeError("rank_batch takes a list of (query, documents) requests; for one "
                        "request use rank(query, documents)")
    rank_args.check_top_k(top_k)
    reqs = []
    for i, req in enumerate(requests):
        if not isinstance(req, tuple | list) or len(req) != 2:
            raise TypeError(f"requests[{i}] must be a (query, documents) pair")
        rank_args.check_text(f"requests[{i}] query", req[0])
        reqs.append((req[0], rank_args.documents_of(req[1])))
    if first_stage_scores is not None and len(first_stage_scores) != len(reqs):
        raise ValueError(f"first_stage_scores has {len(first_stage_scores)} lists for "
                         f"{len(reqs)} requests")
    firsts = [rank_args.first_stage_of(
        None if first_stage_scores is None else first_stage_scores[i], fuse, fuse_norm,
        len(d)) for i, (_, d) in enumerate(reqs)]
    c = None if cascade is None else rr.resolve_cascade(cascade)
    if c is None:
        rr.resolve_plan(plan)
    if queries_in_flight is not None and (isinstance(queries_in_flight, bool) or not
                                          isinstance(queries_in_flight, int)
                                          or queries_in_flight < 1):
        raise ValueError(f"queries_in_flight must be an int >= 1, got {queries_in_flight!r}")
    if windows is not None:
        flat = [(q, d) for q, docs in reqs for d in docs]
        scores = score_windows(rr, flat, windows, plan=plan, batch_size=batch_size,
                               max_length=max_length, query_max_length=query_max_length)[0]
        return _ranked_all(reqs, scores, firsts, fuse, fuse_norm, top_k)
    encoded = [rr.encode([(q, d) for d in docs], max_length, query_max_length)
               if docs else [] for q, docs in reqs]
    rr.last_truncated = sum(e.truncated for enc in encoded for e in enc)
    rank_args.warn_truncated(rr.last_truncated, sum(map(len, encoded)), max_length, 4)
    if c is None:
        flat = [e for enc in encoded for e in enc]
        scores = rr.score_encoded(flat, plan=plan, batch_size=batch_size)[0] \
            if flat else np.zeros(0, np.float32)
        return _ranked_all(reqs, scores, firsts, fuse, fuse_norm, top_k)
    from mrr_jax.inference.cascade import run_cascade

    if queries_in_flight is None:
        per = max((len(e) if c.stages[0].keep is None else min(c.stages[0].keep, len(e))
                   for e in encoded), default=1)
        queries_in_flight = max(1, 16 * batch_size // max(per, 1))
    out = []
    for g in range(0, len(reqs), queries_in_flight):
        results, _ = run_cascade(rr, encoded[g:g + queries_in_flight], c,
                                 batch_size=batch_size, tokens_per_batch=tokens_per_batch)
        for (_, docs), r in zip(reqs[g:g + queries_in_flight], results):
            order = r.order[:None if top_k is None else int(top_k)]
            out.append([{"index": int(i), "score": float(r.scores[i]),
                         "stage": int(r.stage[i]), "document": docs[i]} for i in order])
    return out


def _ranked_all(reqs, scores: np.ndarray, firsts, fuse, fuse_norm: str,
                top_k: int | None) -> list[list[dict]]:
    """Each request's ranking from the scores of all requests' documents, in order."""
    out, at = [], 0
    for (_, docs), first in zip(reqs, firsts):
        out.append(ranked(docs, scores[at:at + len(docs)], first, fuse, fuse_norm, top_k))
        at += len(docs)
    return out


def ranked(docs: Sequence[str], scores: np.ndarray, first: list[float] | None,
            fuse: float | None, fuse_norm: str, top_k: int | None) -> list[dict]:
    """One query's documents ordered by score (or fused score), best first; ties keep the
    documents' order."""
    key = scores if first is None else rank_args.fused_scores(scores, first, fuse, fuse_norm)
    order = np.argsort(-key, kind="stable")[:None if top_k is None else int(top_k)]
    return [{"index": int(i), "score": float(scores[i]),
             **({} if first is None else {"fused_score": float(key[i])}),
             "document": docs[i]} for i in order]
