"""LoRA trees and the training forward on a tiny random model (plumbing, exact identities).

Proves: a fresh (zero-``b``) adapter scores exactly like the base; folded and run-time adapters
agree; several adapters add; adapter dropout draws one independent mask per projection from
the ``dropout`` rng (none without it); the shape-stable training forward (``score_masked``)
equals the shrinking inference forward for every sampled sub-model; saved adapters round-trip
and refuse another model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax import Plan
from mrr_jax.core import spec
from mrr_jax.core.decoder import DecoderLayer
from mrr_jax.core.forward import score_forward, score_masked
from mrr_jax.core.lora import Adapter, LoraConfig, init_lora
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.weights.adapters import load_adapter, save_adapter
from tests.test_compression import TINY, random_rows, tiny_reranker


def _arrays(rows):
    pairs = [EncodedPair.from_ids(ids, q, r) for ids, q, r in rows]
    return {k: jnp.asarray(v) for k, v in batching.pack(pairs, len(pairs)).items()}


def _random_adapter(rr, seed=0, rank=4):
    cfg = LoraConfig(rank=rank, alpha=8.0, dropout=0.0)
    tree = init_lora(jax.random.key(seed), rr.params, rr.heads, cfg)
    rng = np.random.default_rng(seed)
    tree = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(0.2 * rng.standard_normal(x.shape), x.dtype)
        if p[-1].key == "b" else x, tree)
    return Adapter.of(tree, cfg), tree, cfg


def _score(rr, arrays, plan, adapters=()):
    plan = Plan.parse(plan).resolve(TINY.num_layers)
    exits = tuple(range(rr.start_layer, plan.depth + 1))
    return np.asarray(score_forward(rr.params, rr.heads, **arrays, adapters=tuple(adapters),
                                    cfg=TINY, plan=plan, exits=exits,
                                    start_layer=rr.start_layer))


def test_fresh_adapter_scores_exactly_like_the_base():
    rr = tiny_reranker()
    arrays = _arrays(random_rows(6))
    cfg = LoraConfig(rank=4, alpha=8.0, dropout=0.0)
    fresh = Adapter.of(init_lora(jax.random.key(0), rr.params, rr.heads, cfg), cfg)
    for plan in ("", "depth=6 compress=3:2"):
        np.testing.assert_array_equal(_score(rr, arrays, plan, [fresh]), _score(rr, arrays, plan))


def test_folded_equals_runtime_and_adapters_add():
    rr = tiny_reranker()
    arrays = _arrays(random_rows(6))
    a1, _, _ = _random_adapter(rr, 1)
    a2, _, _ = _random_adapter(rr, 2)
    base = _score(rr, arrays, "")
    runtime = _score(rr, arrays, "depth=7 compress=3:2", [a1, a2])
    folded = rr.with_backbone(rr.backbone.folded([a1, a2]))  # core.lora.fold
    np.testing.assert_allclose(_score(folded, arrays, "depth=7 compress=3:2"), runtime,
                               atol=2e-5, rtol=1e-5)
    assert np.abs(runtime[-1] - base[5]).max() > 1e-2  # the adapters do change the scores


@pytest.mark.parametrize("mode", ["merge", "select"])
def test_masked_training_forward_equals_inference_forward(mode):
    rr = tiny_reranker()
    arrays = _arrays(random_rows(6, seed=3))
    a1, _, _ = _random_adapter(rr, 1)
    candidates = (2, 4, 6)
    exits = tuple(range(rr.start_layer, TINY.num_layers + 1))
    for ratio, at in [(1, (1, 1, 1)), (2, (1, 0, 1)), (4, (0, 1, 0)), (2, (1, 1, 1))]:
        layers = [c for c, on in zip(candidates, at) if on and ratio > 1]
        text = "" if not layers else "compress=" + ",".join(f"{c}:{ratio}" for c in layers)
        want = _score(rr, arrays, text + f" mode={mode}", [a1])
        got = score_masked(rr.params, rr.heads, (a1,), *(arrays[k] for k in (
            "q_ids", "p_ids", "r_ids", "q_len", "p_len", "r_len")), jnp.int32(ratio),
            jnp.asarray(at, bool), cfg=TINY, candidates=candidates, exits=exits,
            start_layer=rr.start_layer, mode=mode)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=1e-5,
                                   err_msg=f"ratio {ratio} at {at}")


def test_adapter_save_load_round_trip_and_model_check(tmp_path):
    rr = tiny_reranker()
    ad, tree, cfg = _random_adapter(rr, 4)
    save_adapter(tmp_path / "a", tree, cfg, TINY, rr.start_layer, role="horizontal", ratio=2)
    back = load_adapter(tmp_path / "a", TINY, rr.start_layer)
    assert back.scale == cfg.scale
    jax.tree.map(np.testing.assert_array_equal, back.params, jax.tree.map(np.asarray, tree))
    with pytest.raises(ValueError, match="another model.*num_layers"):
        load_adapter(tmp_path / "a", TINY.__class__(**{**TINY.__dict__, "num_layers": 6}),
                     rr.start_layer)


def test_dropout_masks_are_independent_per_projection_and_follow_the_rng():
    """gate and up get identical base weights and adapter factors: with dropout their outputs
    differ (two masks), the same key repeats them, and no rng means no dropout."""
    layer0 = jax.tree.map(lambda w: jnp.asarray(w[0]), spec.random_params(TINY, 0)["layers"])
    layer0["up"] = layer0["gate"]
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((TINY.hidden_size, 4)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((4, TINY.intermediate_size)), jnp.float32)
    variables = {"params": layer0, "lora": {"0": {"gate": {"a": a, "b": b},
                                                  "up": {"a": a, "b": b}}}}
    x = jnp.asarray(rng.standard_normal((2, 5, TINY.hidden_size)), jnp.float32)

    def both(m, x):
        return m.proj(x, "gate", "BTD,DF->BTF"), m.proj(x, "up", "BTD,DF->BTF")

    layer = DecoderLayer(TINY, (2.0,), (0.5,))
    g, u = layer.apply(variables, x, method=both, rngs={"dropout": jax.random.key(1)})
    assert np.abs(np.asarray(g - u)).max() > 1e-3
    g2, u2 = layer.apply(variables, x, method=both, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(u, u2)
    g0, u0 = layer.apply(variables, x, method=both)
    np.testing.assert_array_equal(g0, u0)
    no_dropout = DecoderLayer(TINY, (2.0,), (0.0,)).apply(variables, x, method=both,
                                                          rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(g0, no_dropout[0])
