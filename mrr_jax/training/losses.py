"""Stage-1 loss of the Matryoshka re-ranker (docs/method.md §5.4), as pure functions of scores.

Scores are grouped per query: ``[E, Q, G]`` = exits x queries x candidates, the positive at
candidate 0. With the reference's recipe (``distill_fix_layer_teacher``)::

    L = sum_l CE(softmax(s_l), onehot(0))                       contrastive, every exit
      + sum_l CE(softmax(t), softmax(s_l))   (queries with t)   external teacher, every exit
      + sum_l CE(softmax(sg(f_a(l))), softmax(s_l))             cascaded self-distillation

where s are the student (compressed) scores, f the full-width scores, t the external teacher's
and a(l) the nearest anchor exit strictly deeper than l (anchors 8, 16, 24, 32 for Mistral).
``CE(p, softmax(x)) = -sum p log softmax(x)``, averaged over queries; softmaxes at temperature
``temperature`` (1 in the reference, whose argument is unused). Queries without teacher scores
get no external term -- never a fake uniform target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TEACHERS = ("anchors", "final", "next")


def soft_ce(target_logits: jax.Array, logits: jax.Array, temperature: float = 1.0,
            mask: jax.Array | None = None) -> jax.Array:
    """Mean over queries of -sum softmax(target/T) * log_softmax(logits/T).

    target_logits, logits [..., Q, G]; mask [Q] bool (queries that count). Returns [...]."""
    p = jax.nn.softmax(target_logits.astype(jnp.float32) / temperature, axis=-1)
    ce = -(p * jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)).sum(-1)
    if mask is None:
        return ce.mean(-1)
    m = mask.astype(jnp.float32)
    return (ce * m).sum(-1) / jnp.maximum(m.sum(), 1.0)


def contrastive_ce(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Mean over queries of -log softmax(logits/T)[positive at 0]; logits [..., Q, G]."""
    return -jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)[..., 0].mean(-1)


def teacher_exits(exits: tuple[int, ...], anchors: tuple[int, ...], kind: str = "anchors"
                  ) -> tuple[int | None, ...]:
    """For each student exit, the full-width exit it distils from (None: no term).

    ``anchors``: the nearest anchor strictly deeper (the reference's default); ``final``: the
    last exit; ``next``: the next deeper exit."""
    if kind not in TEACHERS:
        raise ValueError(f"teacher kind must be one of {TEACHERS}, got {kind!r}")
    last = max(exits)
    out = []
    for k in exits:
        if kind == "final":
            out.append(last if k < last else None)
        elif kind == "next":
            deeper = [e for e in exits if e > k]
            out.append(min(deeper) if deeper else None)
        else:
            deeper = [a for a in anchors if a > k]
            out.append(min(deeper) if deeper else None)
    bad = [t for t in out if t is not None and t not in exits]
    if bad:
        raise ValueError(f"teacher exits {bad} are not among the trained exits {exits}")
    return tuple(out)


def stage1_loss(student: jax.Array, full: jax.Array, exits: tuple[int, ...], *,
                teacher: jax.Array | None = None, teacher_mask: jax.Array | None = None,
                anchors: tuple[int, ...] = (8, 16, 24, 32), teacher_kind: str = "anchors",
                temperature: float = 1.0, weights: dict[str, float] | None = None):
    """The stage-1 loss and its terms.

    student, full [E, Q, G]: scores of the compressed and the full-width pass at ``exits``
    (sorted); teacher [Q, G] external scores and teacher_mask [Q] (queries that have them).
    Returns (loss [], terms): ``terms[name]`` [E] per exit for ``ce``, ``teacher``, ``self``."""
    w = {"ce": 1.0, "teacher": 1.0, "self": 1.0, **(weights or {})}
    terms = {"ce": contrastive_ce(student, temperature)}
    if teacher is not None:
        mask = jnp.ones(teacher.shape[0], bool) if teacher_mask is None else teacher_mask
        terms["teacher"] = soft_ce(jnp.broadcast_to(teacher, student.shape), student,
                                   temperature, mask)
    pairs = teacher_exits(exits, anchors, teacher_kind)
    index = {k: i for i, k in enumerate(exits)}
    targets = jax.lax.stop_gradient(full)
    per_exit = [soft_ce(targets[index[t]], student[i], temperature) if t is not None
                else jnp.zeros((), jnp.float32) for i, t in enumerate(pairs)]
    terms["self"] = jnp.stack(per_exit)
    loss = sum(w[name] * v.sum() for name, v in terms.items())
    return loss, terms
