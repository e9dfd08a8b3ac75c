"""The Matryoshka scoring forward: run a plan's layers, compress the passage, score the exits.

Inputs are laid out in three left-aligned, padded regions so that compression has static
shapes (see ``mrr_jax.inputs.batching``)::

    [ query (Qb slots) | passage (Pb slots) | prompt (Rb slots) | probe (1 slot, compat only) ]

Every token carries its logical position (query 0..q-1, passage q..q+P-1, prompt after), and
attention is causal over positions (``core.decoder``), so this layout computes exactly what the
contiguous right-padded sequence computes. Compression shrinks only the passage region,
Pb -> ceil(Pb / r), and renumbers positions contiguously from 0 as the authors' code does.

Importance for a compression is the attention paid, in the layer just run, by each row's own
scoring token (the last prompt token), summed over heads. With ``compat=True`` it comes instead
from the row the authors' code reads: the last row of the *padded batch* -- a pad token at
position T-1 (T = the batch's padded length), or the scoring token itself when the row fills T.
The probe slot reproduces that pad token; it is never visible as a key, as pads are not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mrr_jax.core import compress as compress_lib
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.decoder import Params, embed, rms_norm, run_layers
from mrr_jax.core.lora import Adapter, head_scores
from mrr_jax.core.plan import Plan


def _layout(q_len, p_len, r_len, qb: int, pb: int, rb: int, probe_pos):
    """Positions and key validity [B, T] for the region layout (T = qb+pb+rb (+1 probe))."""
    jq, jp, jr = jnp.arange(qb)[None], jnp.arange(pb)[None], jnp.arange(rb)[None]
    q, p, r = q_len[:, None], p_len[:, None], r_len[:, None]
    total = q + p + r
    pos = [jnp.where(jq < q, jq, total), jnp.where(jp < p, q + jp, total),
           jnp.where(jr < r, q + p + jr, total)]
    valid = [jq < q, jp < p, jr < r]
    if probe_pos is not None:
        pos.append(jnp.broadcast_to(probe_pos, q.shape).astype(q.dtype))
        valid.append(jnp.zeros_like(q, bool))
    return jnp.concatenate(pos, axis=1), jnp.concatenate(valid, axis=1)


def compress_step(x: jax.Array, w: jax.Array, p_len: jax.Array, qb: int, pb: int, rb: int,
                  ratio: int, mode: str, compat: bool):
    """Compresses the passage region of x [B, qb+pb+rb(+1 probe), D] by ``ratio``.

    w [B, pb]: importance of each passage slot. The query and prompt regions are copied
    unchanged; with ``compat`` the probe slot becomes a zero vector, as the reference's pads do.
    Returns (x' [B, qb + ceil(pb/ratio) + rb (+1), D], new passage lengths [B])."""
    xp, p_len = compress_lib.COMPRESSORS[mode](x[:, qb:qb + pb], w, p_len, ratio)
    parts = [x[:, :qb], xp, x[:, qb + pb:qb + pb + rb]]
    if compat:
        parts.append(jnp.zeros_like(x[:, :1]))
    return jnp.concatenate(parts, axis=1), p_len


def _run_plan(params: Params, x: jax.Array, q_len, p_len, r_len, qb: int, pb: int, rb: int,
              adapters, *, cfg: ModelConfig, plan: Plan, start: int, compat: bool, probe_pos,
              cur_len, w=None, end_importance: bool = False):
    """Layers ``start..plan.depth-1`` of a resolved plan over the region layout, compressing
    where the plan says. ``w`` [B, pb]: the importance a compression at exactly ``start`` uses
    (a resumed pass; None when ``start`` is 0). ``end_importance``: also return the importance
    of the last layer run (for a later pass that compresses at ``plan.depth``).
    Returns (x, p_len, gathered [depth - start, B, D], lengths, padded, importance or None)."""
    ratios = dict(plan.compress)
    if start in ratios:
        x, p_len = compress_step(x, w, p_len, qb, pb, rb, ratios[start], plan.mode, compat)
        pb = x.shape[1] - qb - rb - int(compat)
    gathered, lengths, padded, w_end = [], [], [], None
    bounds = [layer for layer, _ in plan.compress if layer > start] + [plan.depth]
    for stop in bounds:
        positions, valid = _layout(q_len, p_len, r_len, qb, pb, rb, probe_pos)
        score_idx = qb + pb + r_len - 1
        probe = score_idx
        if compat:
            fills = q_len + p_len + r_len == cur_len
            probe = jnp.where(fills, score_idx, x.shape[1] - 1)
        last = stop == plan.depth
        need_importance = stop in ratios or (last and end_importance)
        # Only the last layer before a compression feeds its importance row: the layers
        # before it run the fused attention (the same numbers whether or not a compression
        # follows, so a resumed pass sees exactly the states a longer pass would).
        mid = stop - 1 if need_importance else stop
        x, rec = run_layers(params, x, positions, valid, cfg, start, mid, gather=score_idx,
                            adapters=adapters)
        if rec:
            gathered.append(rec["gathered"])
        if need_importance:
            x, rec = run_layers(params, x, positions, valid, cfg, mid, stop, gather=score_idx,
                                probe=probe, adapters=adapters)
            gathered.append(rec["gathered"])
        if need_importance and not last:
            w = rec["importance"][-1][:, qb:qb + pb]
            x, p_len = compress_step(x, w, p_len, qb, pb, rb, ratios[stop], plan.mode, compat)
            pb = x.shape[1] - qb - rb - int(compat)
            lengths.append(q_len + p_len + r_len)
            if compat:
                cur_len = jnp.max(lengths[-1])
                probe_pos = cur_len - 1
                padded.append(cur_len)
        elif need_importance:
            w_end = rec["importance"][-1][:, qb:qb + pb]
        start = stop
    return x, p_len, jnp.concatenate(gathered, axis=0), lengths, padded, w_end


def _exit_scores(params: Params, heads, h, adapters, *, cfg: ModelConfig, first: int,
                 exits: tuple[int, ...], start_layer: int):
    """Scores [E, B] and features [E, B, D] at ``exits`` from h [depth - first, B, D], the
    scoring-token states of layers ``first..depth-1``."""
    feats = rms_norm(h[jnp.asarray(exits) - 1 - first], params["final_norm"], cfg)
    return head_scores(feats, heads, adapters, jnp.asarray(exits) - start_layer), feats


def _stack(v):
    return jnp.stack(v) if v else jnp.zeros((0,), jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "plan", "exits", "start_layer", "compat",
                                             "dtype", "return_aux", "return_state",
                                             "state_importance"))
def score_forward(params: Params, heads: jax.Array, q_ids: jax.Array, p_ids: jax.Array,
                  r_ids: jax.Array, q_len: jax.Array, p_len: jax.Array, r_len: jax.Array,
                  padded_length: jax.Array, adapters: tuple[Adapter, ...] = (), *,
                  cfg: ModelConfig, plan: Plan, exits: tuple[int, ...], start_layer: int,
                  compat: bool = False, dtype=jnp.float32, return_aux: bool = False,
                  return_state: bool = False, state_importance: bool = False):
    """Scores of one batch at each exit of a resolved plan.

    q_ids [B, Qb], p_ids [B, Pb], r_ids [B, Rb] int32: the query segment (bos .. first "\\n"),
    passage segment ("B: " + passage) and prompt segment ("\\n" + prompt), left-aligned;
    q_len, p_len, r_len [B] int32: their real lengths (r_len >= 1). padded_length [] int32:
    the batch's padded length in the authors' code (compat only; else ignored).
    heads [E_all, D]: exit heads indexed by layer - start_layer. ``adapters``: LoRA trees
    applied at run time (their deltas add; ``mrr_jax.core.lora``).
    Returns scores [E, B] float32 for ``exits`` (sorted, within start_layer..depth). With
    ``return_aux`` also a dict: ``features`` [E, B, D] (the final-normed states scored),
    ``lengths`` [C, B] (each row's sequence length after each of the C compressions) and, with
    ``compat``, ``padded_lengths`` [C] (the reference's re-padded batch length after each).
    With ``return_state`` (not with ``compat``) the dict also has ``state``: what
    :func:`resume_forward` continues from -- the hidden states after ``plan.depth`` layers by
    region, ``xq`` [B, Qb, D], ``xp`` [B, Pb', D] (the compressed passage slots), ``xr``
    [B, Rb, D], the passage lengths ``p_len`` [B] at that depth and, with
    ``state_importance``, ``w`` [B, Pb'] (the last layer's importance row, for a later plan
    that compresses at exactly ``plan.depth``).
    """
    if return_state and compat:
        raise ValueError("return_state: a pass cannot be resumed in compat mode")
    b, qb = q_ids.shape
    pb, rb = p_ids.shape[1], r_ids.shape[1]
    ids = [q_ids, p_ids, r_ids]
    probe_pos = None
    if compat:
        pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else 0
        ids.append(jnp.full((b, 1), pad_id, q_ids.dtype))
        probe_pos = padded_length - 1
    x = embed(params, jnp.concatenate(ids, axis=1), cfg, dtype)
    x, p_len, h, lengths, padded, w = _run_plan(
        params, x, q_len, p_len, r_len, qb, pb, rb, adapters, cfg=cfg, plan=plan, start=0,
        compat=compat, probe_pos=probe_pos, cur_len=padded_length,
        end_importance=return_state and state_importance)
    scores, feats = _exit_scores(params, heads, h, adapters, cfg=cfg, first=0, exits=exits,
                                 start_layer=start_layer)
    if not (return_aux or return_state):
        return scores
    aux = {"features": feats, "lengths": _stack(lengths), "padded_lengths": _stack(padded)}
    if return_state:
        rb_end = x.shape[1] - rb
        aux["state"] = {"xq": x[:, :qb], "xp": x[:, qb:rb_end], "xr": x[:, rb_end:],
                        "p_len": p_len, **({"w": w} if state_importance else {})}
    return scores, aux


@functools.partial(jax.jit, static_argnames=("cfg", "plan", "start", "exits", "start_layer",
                                             "return_state", "state_importance"))
def resume_forward(params: Params, heads: jax.Array, xq: jax.Array, xp: jax.Array,
                   xr: jax.Array, q_len: jax.Array, p_len: jax.Array, r_len: jax.Array,
                   w: jax.Array | None = None, adapters: tuple[Adapter, ...] = (), *,
                   cfg: ModelConfig, plan: Plan, start: int, exits: tuple[int, ...],
                   start_layer: int, return_state: bool = False,
                   state_importance: bool = False):
    """Continues a pass that stopped after ``start`` layers (``score_forward``'s ``state``) to
    the end of resolved ``plan``, which must compress as that pass did below ``start``
    (``core.cascade.extends``); scores [E, B] at ``exits`` (all > ``start``).

    xq [B, Qb, D], xp [B, Pb, D], xr [B, Rb, D]: the hidden states after ``start`` layers by
    region, left-aligned (slots past q_len / p_len / r_len are padding of any value: no key
    sees them); q_len, p_len, r_len [B] int32 (p_len: the passage length at ``start``, after
    the compressions so far); w [B, Pb]: the importance row of layer ``start - 1``, needed
    when ``plan`` compresses at exactly ``start``. ``return_state``: as ``score_forward``, the
    scores then come with ``{"state": ...}`` for a further pass."""
    if min(exits) <= start:
        raise ValueError(f"resume_forward: exits {exits} must be past the {start} layers run")
    if start in dict(plan.compress) and w is None:
        raise ValueError(f"resume_forward: {plan} compresses at layer {start}: pass w")
    qb, pb, rb = xq.shape[1], xp.shape[1], xr.shape[1]
    x = jnp.concatenate([xq, xp, xr], axis=1)
    x, p_len, h, _, _, w_end = _run_plan(
        params, x, q_len, p_len, r_len, qb, pb, rb, adapters, cfg=cfg, plan=plan, start=start,
        compat=False, probe_pos=None, cur_len=None, w=w,
        end_importance=return_state and state_importance)
    scores, _ = _exit_scores(params, heads, h, adapters, cfg=cfg, first=start, exits=exits,
                             start_layer=start_layer)
    if not return_state:
        return scores
    rb_end = x.shape[1] - rb
    return scores, {"state": {"xq": x[:, :qb], "xp": x[:, qb:rb_end], "xr": x[:, rb_end:],
                              "p_len": p_len, **({"w": w_end} if state_importance else {})}}


def score_masked(params: Params, heads: jax.Array, adapters: tuple[Adapter, ...],
                 q_ids: jax.Array, p_ids: jax.Array, r_ids: jax.Array, q_len: jax.Array,
                 p_len: jax.Array, r_len: jax.Array, ratio: jax.Array, compress_at: jax.Array,
                 *, cfg: ModelConfig, candidates: tuple[int, ...], exits: tuple[int, ...],
                 start_layer: int, mode: str = "merge", rng: jax.Array | None = None,
                 remat: bool = False, dtype=jnp.float32) -> jax.Array:
    """The training forward: scores [E, B] of the sub-model (``ratio``, ``compress_at``), with
    shapes that do not depend on which sub-model was sampled, so one program serves them all.

    ratio [] int32 (1: no compression) and compress_at [C] bool (compress before layer
    ``candidates[c]``) are traced. The passage region keeps its Pb slots: after a compression
    the kept (merged) tokens fill the first ceil(p/ratio) slots and the rest become padding,
    which attention never sees -- the same numbers as ``score_forward``'s shrinking layout
    (tested), at full-width cost. ``rng`` turns on adapter dropout. Other arguments as
    ``score_forward``; exits run up to ``max(exits)``."""
    qb, pb, rb = q_ids.shape[1], p_ids.shape[1], r_ids.shape[1]
    x = embed(params, jnp.concatenate([q_ids, p_ids, r_ids], axis=1), cfg, dtype)
    depth = max(exits)
    score_idx = qb + pb + r_len - 1
    bounds = [c for c in candidates if c < depth] + [depth]
    gathered, start = [], 0
    for c, stop in enumerate(bounds):
        positions, valid = _layout(q_len, p_len, r_len, qb, pb, rb, None)
        last = stop == depth
        x, rec = run_layers(params, x, positions, valid, cfg, start, stop, gather=score_idx,
                            probe=None if last else score_idx, adapters=adapters, rng=rng,
                            remat=remat)
        gathered.append(rec["gathered"])
        if not last:
            w = rec["importance"][-1][:, qb:qb + pb]
            xp, new_len = compress_lib.MASKED[mode](x[:, qb:qb + pb], w, p_len, ratio)
            do = compress_at[c] & (ratio > 1)
            x = x.at[:, qb:qb + pb].set(jnp.where(do, xp, x[:, qb:qb + pb]))
            p_len = jnp.where(do, new_len, p_len)
        start = stop
    h = jnp.concatenate(gathered, axis=0)  # [depth, B, D]
    feats = rms_norm(h[jnp.asarray(exits) - 1], params["final_norm"], cfg)
    key = None if rng is None else jax.random.fold_in(rng, cfg.num_layers)
    return head_scores(feats, heads, adapters, jnp.asarray(exits) - start_layer, key)
