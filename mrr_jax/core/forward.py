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


@functools.partial(jax.jit, static_argnames=("cfg", "plan", "exits", "start_layer", "compat",
                                             "dtype", "return_aux"))
def score_forward(params: Params, heads: jax.Array, q_ids: jax.Array, p_ids: jax.Array,
                  r_ids: jax.Array, q_len: jax.Array, p_len: jax.Array, r_len: jax.Array,
                  padded_length: jax.Array, adapters: tuple[Adapter, ...] = (), *,
                  cfg: ModelConfig, plan: Plan, exits: tuple[int, ...], start_layer: int,
                  compat: bool = False, dtype=jnp.float32, return_aux: bool = False):
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
    """
    b, qb = q_ids.shape
    pb, rb = p_ids.shape[1], r_ids.shape[1]
    depth = plan.depth
    ids = [q_ids, p_ids, r_ids]
    probe_pos = None
    if compat:
        pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else 0
        ids.append(jnp.full((b, 1), pad_id, q_ids.dtype))
        probe_pos = padded_length - 1
    x = embed(params, jnp.concatenate(ids, axis=1), cfg, dtype)
    cur_len = padded_length  # compat: length of the reference's padded batch

    gathered, lengths, padded = [], [], []
    bounds = [layer for layer, _ in plan.compress] + [depth]
    ratios = dict(plan.compress)
    start = 0
    for stop in bounds:
        positions, valid = _layout(q_len, p_len, r_len, qb, pb, rb, probe_pos)
        score_idx = qb + pb + r_len - 1
        probe = score_idx
        if compat:
            fills = q_len + p_len + r_len == cur_len
            probe = jnp.where(fills, score_idx, x.shape[1] - 1)
        need_importance = stop in ratios
        x, rec = run_layers(params, x, positions, valid, cfg, start, stop, gather=score_idx,
                            probe=probe if need_importance else None, adapters=adapters)
        gathered.append(rec["gathered"])
        if need_importance:
            w = rec["importance"][-1][:, qb:qb + pb]
            x, p_len = compress_step(x, w, p_len, qb, pb, rb, ratios[stop], plan.mode, compat)
            pb = x.shape[1] - qb - rb - int(compat)
            lengths.append(q_len + p_len + r_len)
            if compat:
                cur_len = jnp.max(lengths[-1])
                probe_pos = cur_len - 1
                padded.append(cur_len)
        start = stop

    h = jnp.concatenate(gathered, axis=0)  # [depth, B, D]: h_k at the scoring token
    layer_idx = jnp.asarray(exits) - 1
    feats = rms_norm(h[layer_idx], params["final_norm"], cfg)  # [E, B, D]
    scores = head_scores(feats, heads, adapters, jnp.asarray(exits) - start_layer)
    if not return_aux:
        return scores
    def stack(v):
        return jnp.stack(v) if v else jnp.zeros((0,), jnp.int32)

    return scores, {"features": feats, "lengths": stack(lengths), "padded_lengths": stack(padded)}


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
