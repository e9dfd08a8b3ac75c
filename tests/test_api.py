"""The public API on the real model: compute_score, rank, exits, normalize, truncation, order."""

import warnings

import numpy as np
import pytest

from mrr_jax import Plan, Reranker

pytestmark = pytest.mark.slow

QUERY = "What is the capital of France?"
DOCS = ["Paris is the capital and most populous city of France.",
        "Bananas are a good source of potassium.",
        "The Eiffel Tower is in Paris, the French capital, on the Seine.",
        "Mount Everest is the highest mountain above sea level."]
# Two different compiled programs (other batch shapes, other exits) sum in other orders: scores
# near 12 then differ by a few float32 ulps (one ulp there is 9.5e-7; 1.1e-5 was seen in CI).
ULPS = 2e-6


@pytest.fixture(scope="module")
def rr(smollm2_dir):
    return Reranker.from_pretrained(smollm2_dir)


def test_compute_score_shapes_order_and_normalize(rr):
    pairs = [(QUERY, d) for d in DOCS]
    s = rr.compute_score(pairs, batch_size=3)
    assert s.shape == (4,) and s.dtype == np.float32
    # Input order is restored whatever the length-sorted batching did.
    perm = [2, 0, 3, 1]
    np.testing.assert_allclose(rr.compute_score([pairs[i] for i in perm], batch_size=3), s[perm],
                               atol=1e-5, rtol=ULPS)
    by_exit = rr.compute_score(pairs, exits=[20, 8, 30])
    assert by_exit.shape == (3, 4)
    np.testing.assert_allclose(by_exit[2], s, atol=1e-5, rtol=ULPS)
    np.testing.assert_allclose(rr.compute_score(pairs, exits=[8])[0], by_exit[1],
                               atol=1e-5, rtol=ULPS)
    p = rr.compute_score(pairs, normalize=True)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-s)), rtol=1e-5)
    assert rr.compute_score(pairs[0]).shape == (1,)  # a single pair is accepted


def test_rank_sorts_by_score_under_a_plan(rr):
    plan = Plan.parse("depth=20 compress=8:2")
    ranked = rr.rank(QUERY, DOCS, plan=plan, top_k=3)
    scores = rr.compute_score([(QUERY, d) for d in DOCS], plan=plan)
    assert [r["index"] for r in ranked] == list(np.argsort(-scores)[:3])
    assert [r["document"] for r in ranked] == [DOCS[r["index"]] for r in ranked]
    assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
    assert rr.rank(QUERY, DOCS, plan="depth=12")[0]["score"] == pytest.approx(
        float(rr.compute_score([(QUERY, d) for d in DOCS], plan="depth=12").max()),
        abs=1e-5, rel=ULPS)


def test_truncation_cuts_the_passage_never_the_prompt_and_is_counted(rr):
    long_doc = " ".join(["Paris is lovely in spring."] * 200)
    enc = rr.encode([(QUERY, long_doc), (QUERY, DOCS[0])], max_length=64)
    assert enc[0].truncated and not enc[1].truncated
    assert len(enc[0].query) + len(enc[0].passage) == 64
    assert enc[0].prompt == enc[1].prompt and len(enc[0].prompt) == 12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rr.compute_score([(QUERY, long_doc), (QUERY, DOCS[0])], max_length=64)
    assert rr.last_truncated == 1
    assert any("1 of 2 pairs were truncated" in str(w.message) for w in caught)
    long_query = " ".join(["capital"] * 100)
    enc = rr.encode([(long_query, DOCS[0])], max_length=64, query_max_length=10)
    assert enc[0].truncated and len(enc[0].query) == 1 + 10 + 1


def test_a_reranker_is_immutable_and_copies_share_the_backbone(rr):
    """place / with_adapters / folded return new objects; the original never changes; the
    only state a call leaves is ``last_truncated``."""
    from mrr_jax.core.backbone import Backbone

    assert isinstance(rr.backbone, Backbone) and rr.heads.shape == (30 - 4 + 1, 576)
    with pytest.raises(AttributeError, match="immutable"):
        rr.adapters = ()
    view = rr.with_adapters([])
    assert view is not rr and view.backbone is rr.backbone and view.adapters == ()
    assert view.tokenizer is rr.tokenizer and view.last_truncated == 0
    assert rr.folded("full").params is rr.params  # no adapters: nothing to fold
    pairs = [(QUERY, d) for d in DOCS]
    np.testing.assert_array_equal(view.compute_score(pairs), rr.compute_score(pairs))
