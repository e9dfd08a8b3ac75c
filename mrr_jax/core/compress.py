"""Width compression of the passage segment, with static shapes.

Both functions take the passage region of the hidden states xp [B, P, D], per-token importance
w [B, P] (float32, >= 0) and the real passage lengths p_len [B] (tokens j >= p_len[b] are
padding), and return the compressed region [B, ceil(P / r), D] plus the new lengths
ceil(p_len / r). Shapes depend only on P and r, so every shape is known at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def new_length(p_len: jax.Array, ratio: int) -> jax.Array:
    """ceil(p_len / ratio), elementwise."""
    return (p_len + ratio - 1) // ratio


def merge(xp: jax.Array, w: jax.Array, p_len: jax.Array, ratio: int):
    """Each group of ``ratio`` adjacent passage tokens (from the passage start) becomes their
    importance-weighted mean; a final partial group's missing slots weigh 0. A group whose
    weights are all 0 becomes the zero vector (the reference would produce NaN)."""
    if ratio == 1:
        return xp, p_len
    b, p, d = xp.shape
    g = -(-p // ratio)
    real = jnp.arange(p)[None, :] < p_len[:, None]
    w = jnp.where(real, w, 0.0)
    pad = g * ratio - p
    xg = jnp.pad(xp, ((0, 0), (0, pad), (0, 0))).reshape(b, g, ratio, d)
    wg = jnp.pad(w, ((0, 0), (0, pad))).reshape(b, g, ratio)
    den = wg.sum(-1, keepdims=True)
    wn = jnp.where(den > 0, wg / jnp.where(den > 0, den, 1.0), 0.0)
    out = jnp.einsum("BGR,BGRD->BGD", wn, xg.astype(jnp.float32))
    return out.astype(xp.dtype), new_length(p_len, ratio)


def select(xp: jax.Array, w: jax.Array, p_len: jax.Array, ratio: int):
    """Keeps the ceil(p_len / ratio) most important real passage tokens of each row, in their
    original order (ties broken by position); slots past the new length are zero."""
    if ratio == 1:
        return xp, p_len
    b, p, _ = xp.shape
    k = -(-p // ratio)
    j = jnp.arange(p)[None, :]
    real = j < p_len[:, None]
    keep_n = new_length(p_len, ratio)
    order = jnp.argsort(jnp.where(real, -w, jnp.inf), axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1)  # rank[b, j]: place of token j by importance
    keep = real & (rank < keep_n[:, None])
    idx = jnp.argsort(jnp.where(keep, j, p + j), axis=-1)[:, :k]
    out = jnp.take_along_axis(xp, idx[..., None], axis=1)
    out = jnp.where((jnp.arange(k)[None, :] < keep_n[:, None])[..., None], out, 0)
    return out, keep_n


COMPRESSORS = {"merge": merge, "select": select}


def merge_masked(xp: jax.Array, w: jax.Array, p_len: jax.Array, ratio: jax.Array):
    """``merge`` with a traced ``ratio`` and no change of shape: group g's weighted mean goes to
    slot g; slots >= ceil(p_len / ratio) are zero (the caller marks them as padding)."""
    b, p, d = xp.shape
    j = jnp.arange(p)
    w = jnp.where(j[None, :] < p_len[:, None], w, 0.0)
    member = (j[None, :] // ratio == j[:, None]).astype(jnp.float32)  # [G=P, P]
    wg = member[None] * w[:, None, :]  # [B, G, P]
    den = wg.sum(-1, keepdims=True)
    wn = jnp.where(den > 0, wg / jnp.where(den > 0, den, 1.0), 0.0)
    out = jnp.einsum("BGP,BPD->BGD", wn, xp.astype(jnp.float32))
    return out.astype(xp.dtype), new_length(p_len, ratio)


def select_masked(xp: jax.Array, w: jax.Array, p_len: jax.Array, ratio: jax.Array):
    """``select`` with a traced ``ratio`` and no change of shape (slots past the kept tokens
    are zero)."""
    b, p, _ = xp.shape
    j = jnp.arange(p)[None, :]
    real = j < p_len[:, None]
    keep_n = new_length(p_len, ratio)
    order = jnp.argsort(jnp.where(real, -w, jnp.inf), axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1)
    keep = real & (rank < keep_n[:, None])
    idx = jnp.argsort(jnp.where(keep, j, p + j), axis=-1)
    out = jnp.take_along_axis(xp, idx[..., None], axis=1)
    out = jnp.where((j < keep_n[:, None])[..., None], out, 0)
    return out, keep_n


MASKED = {"merge": merge_masked, "select": select_masked}
