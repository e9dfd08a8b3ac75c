"""The stage-1 loss equals a hand computation of docs/method.md §5.4, term by term."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax.training.losses import stage1_loss, teacher_exits

EXITS = (4, 5, 6, 7, 8)


def _logsoftmax(x):
    x = np.asarray(x, np.float64)
    return x - x.max() - math.log(np.exp(x - x.max()).sum())


def _ce(p, x):
    return -float((np.asarray(p) * _logsoftmax(x)).sum())


def _softmax(x):
    return np.exp(_logsoftmax(x))


def test_teacher_exits_follow_the_reference_cascade():
    mistral = tuple(range(4, 33))
    t = dict(zip(mistral, teacher_exits(mistral, (8, 16, 24, 32))))
    assert t[4] == t[7] == 8 and t[8] == t[15] == 16 and t[23] == 24 and t[24] == t[31] == 32
    assert t[32] is None
    assert teacher_exits((4, 5, 6), (8,), "final") == (6, 6, None)
    assert teacher_exits((4, 5, 6), (8,), "next") == (5, 6, None)
    with pytest.raises(ValueError, match="teacher kind"):
        teacher_exits((4,), (8,), "best")


def test_loss_equals_hand_computation_every_term():
    rng = np.random.default_rng(0)
    e, q, g = len(EXITS), 3, 4
    s = rng.standard_normal((e, q, g)).astype(np.float32)
    f = rng.standard_normal((e, q, g)).astype(np.float32)
    t = rng.standard_normal((q, g)).astype(np.float32)
    has_t = np.array([True, False, True])
    anchors = (6, 8)
    loss, terms = stage1_loss(jnp.asarray(s), jnp.asarray(f), EXITS, teacher=jnp.asarray(t),
                              teacher_mask=jnp.asarray(has_t), anchors=anchors)
    teach = {4: 6, 5: 6, 6: 8, 7: 8, 8: None}
    ce = [np.mean([-_logsoftmax(s[i, j])[0] for j in range(q)]) for i in range(e)]
    ext = [np.mean([_ce(_softmax(t[j]), s[i, j]) for j in range(q) if has_t[j]])
           for i in range(e)]
    sd = [0.0 if teach[k] is None else
          np.mean([_ce(_softmax(f[EXITS.index(teach[k]), j]), s[i, j]) for j in range(q)])
          for i, k in enumerate(EXITS)]
    np.testing.assert_allclose(terms["ce"], ce, rtol=1e-5)
    np.testing.assert_allclose(terms["teacher"], ext, rtol=1e-5)
    np.testing.assert_allclose(terms["self"], sd, rtol=1e-5)
    assert float(loss) == pytest.approx(sum(ce) + sum(ext) + sum(sd), rel=1e-5)


def test_weights_temperature_no_teacher_and_stop_gradient():
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.standard_normal((5, 2, 4)), jnp.float32)
    f = jnp.asarray(rng.standard_normal((5, 2, 4)), jnp.float32)
    loss, terms = stage1_loss(s, f, EXITS, anchors=(6, 8), temperature=2.0,
                              weights={"ce": 0.5, "self": 3.0})
    assert "teacher" not in terms  # no fake uniform target when the data has no scores
    assert float(loss) == pytest.approx(0.5 * float(terms["ce"].sum())
                                        + 3.0 * float(terms["self"].sum()), rel=1e-6)
    # The full-width teacher is a constant: no gradient flows into it.
    grad_f = jax.grad(lambda f_: stage1_loss(s, f_, EXITS, anchors=(6, 8))[0])(f)
    assert not np.asarray(grad_f).any()
    grad_s = jax.grad(lambda s_: stage1_loss(s_, f, EXITS, anchors=(6, 8))[0])(s)
    assert np.asarray(grad_s).any()
