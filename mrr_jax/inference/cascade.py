"""Running a :class:`~mrr_jax.core.cascade.Cascade` over many queries at once.

Each stage scores the documents its queries pass on, all queries' pairs together in
length-sorted batches (so batches stay full across queries). When the next stage resumes this
one (``Cascade.resumes`` and the same adapters; not in compat mode), this stage's pass also
returns its hidden states (``core.forward.score_forward``'s ``state``); only the survivors'
rows are kept, on the host, cut to their real tokens per region, and the next stage packs them
into bucketed region slots (static shapes, as token batches are) and runs
``core.forward.resume_forward`` from the previous depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from mrr_jax.core.cascade import Cascade
from mrr_jax.core.forward import resume_forward, score_forward
from mrr_jax.core.plan import Plan
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair


@dataclasses.dataclass
class CascadeResult:
    """One query's outcome. ``order``: document indices, best first (the final ranking);
    ``scores`` [n] float32: each document's score from the last stage that scored it (NaN if
    none did); ``stage`` [n] int: that stage's index (-1: not scored)."""

    order: list[int]
    scores: np.ndarray
    stage: np.ndarray


@dataclasses.dataclass
class CascadeStats:
    """What a run cost: pairs scored per stage and which stages resumed their predecessor."""

    pairs: list[int]
    resumed: list[bool]


def stage_resumes(rr, cascade: Cascade, i: int) -> bool:
    """Whether stage ``i`` of resolved ``cascade`` runs from stage ``i - 1``'s states on
    ``rr``: the plans allow it, both run with the same adapters, and ``rr`` is not in compat
    mode (where a pair's states depend on its batch)."""
    if i == 0 or not cascade.resumes(i) or rr.compat == "reference":
        return False
    a = rr.adapters_for(cascade.stages[i - 1].plan)
    b = rr.adapters_for(cascade.stages[i].plan)
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _pack_states(states: Sequence[dict[str, np.ndarray]], rows: Sequence[EncodedPair],
                 n_rows: int, with_w: bool) -> dict[str, np.ndarray]:
    """Host states (cut to real tokens) packed into bucketed region slots, zero-padded; filler
    rows repeat the last row, as ``batching.pack`` does."""
    states = list(states) + [states[-1]] * (n_rows - len(states))
    rows = list(rows) + [rows[-1]] * (n_rows - len(rows))
    out: dict[str, np.ndarray] = {}
    for key in ("xq", "xp", "xr"):
        width = batching.bucket_length(max(s[key].shape[0] for s in states))
        d = states[0][key].shape[1]
        arr = np.zeros((n_rows, width, d), states[0][key].dtype)
        for b, s in enumerate(states):
            arr[b, :s[key].shape[0]] = s[key]
        out[key] = arr
    if with_w:
        out["w"] = np.zeros(out["xp"].shape[:2], np.float32)
        for b, s in enumerate(states):
            out["w"][b, :s["w"].shape[0]] = s["w"]
    out["q_len"] = np.array([len(r.query) for r in rows], np.int32)
    out["r_len"] = np.array([len(r.prompt) for r in rows], np.int32)
    out["p_len"] = np.array([s["xp"].shape[0] for s in states], np.int32)
    return out


def _host_state(state: dict, b: int, q_len: int, r_len: int) -> dict[str, np.ndarray]:
    """Row ``b`` of a device state, cut to its real tokens per region."""
    p = int(state["p_len"][b])
    out = {"xq": np.asarray(state["xq"][b, :q_len]), "xp": np.asarray(state["xp"][b, :p]),
           "xr": np.asarray(state["xr"][b, :r_len])}
    if "w" in state:
        out["w"] = np.asarray(state["w"][b, :p], np.float32)
    return out


def run_cascade(rr, encoded: Sequence[Sequence[EncodedPair]], cascade: Cascade | str, *,
                batch_size: int = 32, tokens_per_batch: int | None = None
                ) -> tuple[list[CascadeResult], CascadeStats]:
    """Runs ``cascade`` on ``rr`` for each query's tokenized candidates ``encoded[q]`` (in
    first-stage order). Returns one :class:`CascadeResult` per query and the run's
    :class:`CascadeStats`."""
    c = rr.resolve_cascade(cascade)
    n_stages = len(c.stages)
    resumes = [stage_resumes(rr, c, i) for i in range(n_stages)] + [False]
    scores = [np.full(len(e), np.nan, np.float32) for e in encoded]
    stage_of = [np.full(len(e), -1, np.int64) for e in encoded]
    first = c.stages[0].keep
    todo = [list(range(len(e) if first is None else min(first, len(e)))) for e in encoded]
    done: list[list[list[int]]] = [[] for _ in encoded]  # per query: each stage's order
    states: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    stats = CascadeStats([], resumes[:n_stages])
    for s, stage in enumerate(c.stages):
        items = [(q, d) for q, ds in enumerate(todo) for d in ds]
        stats.pairs.append(len(items))
        keep_state = resumes[s + 1]
        with_w = keep_state and stage.plan.depth in dict(c.stages[s + 1].plan.compress)
        kept: list[tuple[list[tuple[int, int]], dict]] = []
        for idx in batching.plan_batches([encoded[q][d] for q, d in items], batch_size,
                                         tokens_per_batch):
            batch = [items[i] for i in idx]
            rows = [encoded[q][d] for q, d in batch]
            out = _score(rr, stage.plan, rows, batch, states, resumes[s], keep_state,
                         with_w, c.stages[s - 1].plan.depth if s else 0, batch_size)
            if keep_state:
                out, state = out
                kept.append((batch, state))
            vals = np.asarray(out)[0, :len(batch)]
            for (q, d), v in zip(batch, vals):
                scores[q][d] = v
                stage_of[q][d] = s
        states = {}
        nxt = c.stages[s + 1].keep if s + 1 < n_stages else None
        for q, ds in enumerate(todo):
            order = sorted(ds, key=lambda d, q=q: -scores[q][d])  # stable: ties keep order
            done[q].append(order)
            todo[q] = order[:nxt] if nxt is not None else []
        if keep_state:
            wanted = {(q, d) for q, ds in enumerate(todo) for d in ds}
            for batch, state in kept:
                for b, (q, d) in enumerate(batch):
                    if (q, d) in wanted:
                        e = encoded[q][d]
                        states[(q, d)] = _host_state(state, b, len(e.query), len(e.prompt))
    results = []
    for q, orders in enumerate(done):
        final: list[int] = []
        seen: set[int] = set()
        for order in reversed(orders):
            final += [d for d in order if d not in seen]
            seen.update(order)
        final += [d for d in range(len(encoded[q])) if d not in seen]
        results.append(CascadeResult(final, scores[q], stage_of[q]))
    return results, stats


def _score(rr, plan: Plan, rows, batch, states, resume: bool, keep_state: bool, with_w: bool,
           start: int, batch_size: int):
    """Scores [1, B] of one batch under ``plan`` (from ``start`` layers' host ``states`` when
    ``resume``), with its device state when ``keep_state``."""
    n_rows = batching.batch_bucket(len(rows), batch_size)
    common = dict(adapters=rr.adapters_for(plan), cfg=rr.cfg, plan=plan, exits=(plan.depth,),
                  start_layer=rr.start_layer)
    if resume:
        need_w = start in dict(plan.compress)
        a = _pack_states([states[k] for k in batch], rows, n_rows, need_w)
        out = resume_forward(rr.params, rr.heads, *(jnp.asarray(a[k]) for k in (
            "xq", "xp", "xr", "q_len", "p_len", "r_len")),
            jnp.asarray(a["w"]) if need_w else None, start=start, return_state=keep_state,
            state_importance=with_w, **common)
    else:
        a = batching.pack(rows, n_rows)
        out = score_forward(rr.params, rr.heads, **{k: jnp.asarray(v) for k, v in a.items()},
                            compat=rr.compat == "reference", dtype=rr.dtype,
                            return_state=keep_state, state_importance=with_w, **common)
    if keep_state:
        out, aux = out
        return out, aux["state"]
    return out
