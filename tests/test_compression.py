"""Width compression: unit properties of merge/select and model-level properties of plans.

Unit tests prove the compression arithmetic; model-level tests on a tiny random model prove the
plumbing (layout, renumbered positions, exits, head indexing, batch independence); the SmolLM2
tests show the same on a real model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax import Plan, Reranker
from mrr_jax.core.compress import merge, select
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.forward import compress_step

TINY = ModelConfig(family="llama", vocab_size=64, hidden_size=32, intermediate_size=48,
                   num_layers=8, num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6,
                   rope_theta=10000.0, bos_token_id=1, pad_token_id=2)


def tiny_reranker(seed=0, compat="default", cfg=TINY, start_layer=2):
    """A random model with *distinct* exit heads (so head indexing is observable)."""
    rng = np.random.default_rng(seed)
    d, f, n, k, h, L = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                        cfg.num_kv_heads, cfg.head_dim, cfg.num_layers)
    r = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    layers = {"q": r(L, d, n, h), "k": r(L, d, k, h), "v": r(L, d, k, h), "o": r(L, n, h, d),
              "gate": r(L, d, f), "up": r(L, d, f), "down": r(L, f, d),
              "attn_norm": 1 + r(L, d), "mlp_norm": 1 + r(L, d)}
    params = {"embed": r(cfg.vocab_size, d), "final_norm": 1 + r(d), "layers": layers}
    heads = r(L - start_layer + 1, d)
    return Reranker(cfg, params, heads, start_layer=start_layer, compat=compat)


def random_rows(n, seed=1, vocab=64):
    """n token rows: (ids, query_length, prompt_length), uneven lengths within two length
    buckets (few shapes, few compilations)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        q, p, r = int(rng.integers(2, 7)), int(rng.integers(1, 15)), int(rng.integers(1, 5))
        ids = [1] + rng.integers(3, vocab, q + p + r - 1).tolist()
        rows.append((ids, q, r))
    return rows


def score(rr, rows, **kw):
    ids, q, r = zip(*rows)
    return rr.score_tokens(list(ids), list(q), list(r), **kw)


# ----------------------------------------------------------------------------- unit
def _xp(b=3, p=11, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((b, p, d)), jnp.float32),
            jnp.asarray(rng.random((b, p)) + 0.1, jnp.float32), jnp.asarray([11, 7, 1]))


def test_ratio_one_is_the_uncompressed_model():
    assert Plan.parse("compress=8:1,16:1") == Plan()
    xp, w, p_len = _xp()
    for fn in (merge, select):
        out, new = fn(xp, w, p_len, 1)
        np.testing.assert_array_equal(out, xp)
        np.testing.assert_array_equal(new, p_len)


def test_merge_is_the_importance_weighted_group_mean():
    xp, w, p_len = _xp()
    out, new = merge(xp, w, p_len, 3)
    assert out.shape == (3, 4, 5) and new.tolist() == [4, 3, 1]
    x, ww = np.asarray(xp), np.asarray(w)
    for b, n in enumerate([11, 7, 1]):
        for g in range(-(-n // 3)):
            sl = slice(3 * g, min(3 * g + 3, n))  # a partial last group ignores padding
            want = (ww[b, sl, None] * x[b, sl]).sum(0) / ww[b, sl].sum()
            np.testing.assert_allclose(out[b, g], want, rtol=1e-6, atol=1e-6)


def test_merge_with_one_hot_importance_equals_select():
    xp, _, p_len = _xp()
    rng = np.random.default_rng(3)
    w = np.zeros((3, 11), np.float32)
    for b in range(3):
        for g in range(4):  # one important token per group of 3
            j = 3 * g + int(rng.integers(0, 3 if g < 3 else 2))
            w[b, j] = 0.5 + rng.random()
    for b, n in enumerate([11, 7, 1]):  # only real tokens can be the group's one-hot
        w[b, n:] = 0
        for g in range(-(-n // 3)):
            if not w[b, 3 * g:min(3 * g + 3, n)].any():
                w[b, 3 * g] = 1.0
    m, _ = merge(xp, jnp.asarray(w), p_len, 3)
    s, _ = select(xp, jnp.asarray(w), p_len, 3)
    np.testing.assert_allclose(m, s, atol=1e-6)


def test_select_keeps_the_most_important_tokens_in_order():
    xp = jnp.arange(8, dtype=jnp.float32).reshape(1, 8, 1)
    w = jnp.asarray([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.0, 5.0]])
    out, new = select(xp, w, jnp.asarray([7]), 2)  # token 7 is padding despite its weight
    assert new.tolist() == [4]
    assert out[0, :, 0].tolist() == [1.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("compat", [False, True])
def test_query_and_prompt_rows_survive_compression_unchanged(compat):
    rng = np.random.default_rng(0)
    qb, pb, rb = 8, 16, 8
    x = jnp.asarray(rng.standard_normal((2, qb + pb + rb + int(compat), 4)), jnp.float32)
    w = jnp.asarray(rng.random((2, pb)), jnp.float32)
    out, p_len = compress_step(x, w, jnp.asarray([16, 5]), qb, pb, rb, 4, "merge", compat)
    assert out.shape[1] == qb + 4 + rb + int(compat) and p_len.tolist() == [4, 2]
    np.testing.assert_array_equal(out[:, :qb], x[:, :qb])
    np.testing.assert_array_equal(out[:, qb + 4:qb + 4 + rb], x[:, qb + pb:qb + pb + rb])
    if compat:  # the probe restarts as a zero vector, as the reference's pads do
        assert not np.asarray(out[:, -1]).any()


# ----------------------------------------------------------------------------- model level
PLANS = ["compress=2:2", "compress=3:4 depth=7", "compress=2:2,4:3,6:2",
         "compress=3:3 mode=select", "compress=2:2,5:2 depth=6 mode=select"]


@pytest.mark.parametrize("plan", PLANS)
def test_default_mode_scores_do_not_depend_on_the_batch(plan):
    rr = tiny_reranker()
    rows = random_rows(6)
    depth = Plan.parse(plan).resolve(8).depth
    exits = list(range(2, depth + 1))
    batched = score(rr, rows, plan=plan, exits=exits, batch_size=8)
    alone = np.concatenate([score(rr, [r], plan=plan, exits=exits, batch_size=1)
                            for r in rows], axis=1)
    # Equal up to float32 rounding (padded shapes change XLA's summation order; it grows over
    # layers to ~2e-5 relative here); a real leak is >1e-3 (compat test below).
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=5e-5)


@pytest.mark.parametrize("plan", PLANS)
def test_exits_before_the_first_compression_equal_the_uncompressed_exits(plan):
    rr = tiny_reranker()
    rows = random_rows(5)
    p = Plan.parse(plan)
    first = p.compress[0][0]
    exits = list(range(2, first + 1))  # the exit at a compress layer sees the uncompressed state
    np.testing.assert_allclose(score(rr, rows, plan=p, exits=exits),
                               score(rr, rows, exits=exits), atol=1e-6, rtol=0)
    later = list(range(first + 1, p.resolve(8).depth + 1))
    assert np.abs(score(rr, rows, plan=p, exits=later) - score(rr, rows, exits=later)).max() > 1e-4


def test_lengths_follow_nested_ceilings():
    from mrr_jax.core.forward import score_forward
    from mrr_jax.inputs import batching
    from mrr_jax.inputs.template import EncodedPair

    rr = tiny_reranker()
    plan = Plan.parse("compress=2:3,4:2,6:4")
    rows = [EncodedPair.from_ids(ids, q, r) for ids, q, r in random_rows(5)]
    arrays = batching.pack(rows, 8)
    _, aux = score_forward(rr.params, rr.heads, **arrays, cfg=TINY, plan=plan.resolve(8),
                           exits=(8,), start_layer=2, return_aux=True)
    for b, row in enumerate(rows):
        want = [len(row.query) + p + len(row.prompt) for _, p in
                plan.passage_lengths(len(row.passage))]
        assert np.asarray(aux["lengths"])[:, b].tolist() == want
        per_layer = plan.layer_lengths(8, len(row.query), len(row.passage), len(row.prompt))
        assert per_layer[2] == want[0] and per_layer[4] == want[1] and per_layer[7] == want[2]


def test_heads_are_indexed_by_layer():
    rr = tiny_reranker()
    rows = random_rows(3)
    s, feats = score(rr, rows, exits=[6, 3, 8], return_features=True)
    heads = np.asarray(rr.heads)
    for i, k in enumerate([6, 3, 8]):
        np.testing.assert_allclose(s[i], feats[i] @ heads[k - 2], rtol=1e-5, atol=1e-5)
    # A subset of exits scores each exit with its own layer's head, as the full set does.
    np.testing.assert_allclose(score(rr, rows, exits=[7])[0],
                               score(rr, rows, exits=list(range(2, 9)))[5], atol=1e-6)


def test_compat_mode_depends_on_the_batch_as_the_reference_does():
    """The reference takes importance from the padded batch's last row: batched and single
    scores then differ after a compression (the fixtures measure gaps up to ~1)."""
    rr = tiny_reranker(compat="reference")
    rows = random_rows(6)
    batched = score(rr, rows, plan="compress=2:2", exits=[8], batch_size=8)
    alone = np.concatenate([score(rr, [r], plan="compress=2:2", exits=[8], batch_size=1)
                            for r in rows], axis=1)
    assert np.abs(batched - alone).max() > 1e-3


def test_bfloat16_runs_and_stays_close():
    rr32 = tiny_reranker()
    rr16 = Reranker(TINY, jax.tree.map(np.asarray, rr32.params), np.asarray(rr32.heads),
                    start_layer=2, dtype="bfloat16")
    rows = random_rows(4)
    a = score(rr32, rows, plan="compress=2:2")
    b = score(rr16, rows, plan="compress=2:2")
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert np.abs(a - b).max() < 0.1 * (np.abs(a).max() + 1)


def test_one_program_per_plan_and_shape_bucket():
    from mrr_jax.core.forward import score_forward

    rr = tiny_reranker(seed=5)
    rows = random_rows(4, seed=9)
    score(rr, rows, plan="compress=2:2 depth=5")
    n = score_forward._cache_size()
    score(rr, rows, plan="compress=2:2 depth=5")  # same plan, same buckets: no new program
    score(rr, rows[::-1], plan=Plan.parse("depth=5 compress=2:2"))  # equal plan, other order
    assert score_forward._cache_size() == n
    score(rr, rows, plan="compress=2:3 depth=5")  # a new plan: exactly one new program
    assert score_forward._cache_size() == n + 1
