"""One optimizer step of Matryoshka training, as a pure function for ``jax.jit``.

Per micro-batch (docs/method.md §5.3-5.4, §6): draw a sub-model -- a ratio from ``ratios`` and,
for each candidate compress layer, a coin with probability ``compress_prob`` -- run the
compressed student pass and (when distillation or its weight is on) the full-width pass, whose
exits are the stop-gradient teachers, and take the loss of ``training.losses``. On a
micro-batch that drew ratio 1 the student is full width and is its own teacher: that pass is
skipped (``lax.cond``). Sampling happens inside the program with traced values
(``scoring.score_masked``), so one compiled program serves every sub-model. Gradient
accumulation is a ``lax.scan`` over the micro-batches of the step; the frozen base only ever
enters as an argument that is not differentiated.

Trainable adapters are a dict ``{str(role): lora tree}`` (an
:class:`~mrr_jax.weights.adapters.AdapterRole`'s name): ``stage1`` (stage 1), ``vertical``
(V-LoRA, ratio 1), ``h<r>`` (H-LoRA of ratio r). In a step whose drawn ratio is r the active
adapters are ``vertical`` (if trained) and ``h<r>`` (if trained), or ``stage1``; the others get
no gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from mrr_jax.core.config import ModelConfig
from mrr_jax.core.forward import score_masked
from mrr_jax.core.lora import Adapter
from mrr_jax.training import losses
from mrr_jax.weights.adapters import AdapterRole

BATCH_KEYS = ("q_ids", "p_ids", "r_ids", "q_len", "p_len", "r_len", "teacher", "teacher_mask")


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about a training step (hashable: it keys the compiled program)."""

    cfg: ModelConfig
    start_layer: int
    group_size: int
    ratios: tuple[int, ...] = (1, 2, 4, 8)
    candidates: tuple[int, ...] = ()  # layers before which compression may happen
    compress_prob: float = 0.5
    mode: str = "merge"
    loss_exits: str = "all"  # "all" exits, or "last" (fine-tune the last exit only)
    anchors: tuple[int, ...] = ()
    teacher_kind: str = "anchors"
    temperature: float = 1.0
    weights: tuple[tuple[str, float], ...] = (("ce", 1.0), ("teacher", 1.0), ("self", 1.0))
    lora_scale: float = 2.0
    lora_dropout: float = 0.1
    remat: bool = False
    dtype: str = "float32"

    @property
    def exits(self) -> tuple[int, ...]:
        last = self.cfg.num_layers
        return (last,) if self.loss_exits == "last" else tuple(range(self.start_layer, last + 1))

    @property
    def distill(self) -> bool:
        return dict(self.weights).get("self", 0.0) != 0.0 and len(self.exits) > 1


def step_spec(c, model) -> StepSpec:
    """The StepSpec of training config ``c`` for ``model`` (anything with ``cfg`` and
    ``start_layer``: a Backbone or a Reranker): the stage's ratios (vertical: 1; joint: 1 and
    ``compress.ratios``), the candidate layers (default every 4th below L), the anchors (every
    ``loss.anchor_every``-th layer and L) and the loss weights."""
    L = model.cfg.num_layers
    ratios = tuple(int(r) for r in c.compress.ratios)
    if c.stage == "vertical":
        ratios = (1,)
    elif c.stage == "joint":
        ratios = tuple(sorted({1, *ratios}))
    candidates = tuple(c.compress.layers) or tuple(range(4, L, 4))
    bad = [x for x in candidates if not 1 <= x < L]
    if bad:
        raise ValueError(f"compress.layers {bad} must be within 1..{L - 1}")
    every = c.loss.anchor_every
    anchors = tuple(sorted({*range(every, L, every), L}))
    weights = (("ce", c.loss.ce), ("teacher", c.loss.external), ("self", c.loss.self))
    return StepSpec(
        cfg=model.cfg, start_layer=model.start_layer, group_size=c.data.group_size,
        ratios=ratios, candidates=candidates, compress_prob=c.compress.prob,
        mode=c.compress.mode, loss_exits=c.loss.exits, anchors=anchors,
        teacher_kind=c.loss.teacher, temperature=c.loss.temperature, weights=weights,
        lora_scale=c.lora.alpha / c.lora.rank, lora_dropout=c.lora.dropout,
        remat=c.train.remat, dtype=c.model.dtype)


def sample_submodel(key: jax.Array, spec: StepSpec) -> tuple[jax.Array, jax.Array]:
    """(ratio [] int32, compress_at [C] bool) drawn as the reference: one ratio per step,
    each candidate layer kept with probability ``compress_prob``."""
    k1, k2 = jax.random.split(key)
    ratio = jax.random.choice(k1, jnp.asarray(spec.ratios, jnp.int32))
    at = jax.random.bernoulli(k2, spec.compress_prob, (len(spec.candidates),))
    return ratio, at


def active_adapters(trainable: Mapping[str, dict], ratio: jax.Array, spec: StepSpec
                    ) -> tuple[Adapter, ...]:
    """The adapters of this step's sub-model; an H-LoRA of another ratio is switched off by a
    zero gate on its ``b`` (so it gets no gradient and adds nothing)."""
    out = []
    for name, tree in trainable.items():
        role = AdapterRole.parse(name)
        if role.kind == "horizontal":
            on = (ratio == role.ratio).astype(jnp.float32)
            tree = _gate_b(tree, on)
        out.append(Adapter(tree, spec.lora_scale, spec.lora_dropout))
    return tuple(out)


def _gate_b(tree: dict, on: jax.Array) -> dict:
    def gate(path, leaf):
        return leaf * on if getattr(path[-1], "key", None) == "b" else leaf

    return jax.tree_util.tree_map_with_path(gate, tree)


def micro_loss(trainable: Mapping[str, dict], base: dict, heads: jax.Array,
               batch: Mapping[str, jax.Array], key: jax.Array, spec: StepSpec):
    """Loss of one micro-batch and its terms.

    batch: q_ids [R, Qb], p_ids [R, Pb], r_ids [R, Rb], q_len/p_len/r_len [R] int32,
    teacher [R] float32 and teacher_mask [R] bool (per row; R = queries x group_size, each
    query's group contiguous with its positive first). Returns (loss [], aux dict)."""
    base, heads = jax.tree.map(jnp.asarray, base), jnp.asarray(heads)  # host weights too
    k_sub, k_student, k_full = jax.random.split(key, 3)
    ratio, at = sample_submodel(k_sub, spec)
    adapters = active_adapters(trainable, ratio, spec)
    dtype = jnp.dtype(spec.dtype)
    args = (base, heads, adapters, batch["q_ids"], batch["p_ids"], batch["r_ids"],
            batch["q_len"], batch["p_len"], batch["r_len"])
    kw = dict(cfg=spec.cfg, candidates=spec.candidates, exits=spec.exits,
              start_layer=spec.start_layer, mode=spec.mode, remat=spec.remat, dtype=dtype)
    drop = spec.lora_dropout > 0
    student = score_masked(*args, ratio, at, rng=k_student if drop else None, **kw)
    e, g = len(spec.exits), spec.group_size
    student = student.reshape(e, -1, g)
    if spec.distill:  # ratio 1: the student is full width, so it is its own teacher
        def full_pass():
            return score_masked(*args, jnp.int32(1), jnp.zeros_like(at),
                                rng=k_full if drop else None, **kw).reshape(e, -1, g)

        full = jax.lax.stop_gradient(jax.lax.cond(
            ratio == 1, lambda: jax.lax.stop_gradient(student), full_pass))
    else:
        full = jax.lax.stop_gradient(student)
    weights = dict(spec.weights)
    teacher = batch["teacher"].reshape(-1, g)
    mask = batch["teacher_mask"].reshape(-1, g)[:, 0]
    loss, terms = losses.stage1_loss(
        student, full, spec.exits, teacher=teacher if weights.get("teacher") else None,
        teacher_mask=mask, anchors=spec.anchors, teacher_kind=spec.teacher_kind,
        temperature=spec.temperature, weights=weights)
    return loss, {"terms": terms, "ratio": ratio, "compress_at": at,
                  "teacher_pass": jnp.logical_and(spec.distill, ratio != 1)}


def train_step(trainable: dict, opt_state, base: dict, heads: jax.Array,
               batches: Mapping[str, jax.Array], key: jax.Array, *, spec: StepSpec,
               optimizer: optax.GradientTransformation):
    """One optimizer step over ``A`` accumulated micro-batches (every batch array has a
    leading [A] axis). Gradients are averaged over micro-batches. Returns
    (trainable, opt_state, metrics) with metrics: ``loss`` [], ``terms`` {name: [E]},
    ``ratios`` [A], ``compress_at`` [A, C] (the sampled sub-models), ``teacher_pass`` [A]
    (whether a separate full-width pass ran), ``grad_norm`` []."""
    n_micro = batches["q_ids"].shape[0]
    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def body(carry, xs):
        grads, total = carry
        batch, i = xs
        (loss, aux), g = grad_fn(trainable, base, heads, batch, jax.random.fold_in(key, i), spec)
        grads = jax.tree.map(jnp.add, grads, g)
        return (grads, total + loss), (aux["terms"], aux["ratio"], aux["compress_at"],
                                       aux["teacher_pass"])

    zeros = jax.tree.map(jnp.zeros_like, trainable)
    (grads, total), (terms, ratios, at, teacher) = jax.lax.scan(
        body, (zeros, jnp.zeros((), jnp.float32)), (dict(batches), jnp.arange(n_micro)))
    grads = jax.tree.map(lambda g: g / n_micro, grads)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {"loss": total / n_micro, "terms": jax.tree.map(lambda t: t.mean(0), terms),
               "ratios": ratios, "compress_at": at, "teacher_pass": teacher,
               "grad_norm": optax.global_norm(grads)}
    return trainable, opt_state, metrics


def make_optimizer(lr: float, total_steps: int, warmup_steps: int, *, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                   clip: float = 1.0, head_lr_scale: float = 1.0
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up to ``lr`` and linear decay to 0 at ``total_steps`` (DeepSpeed's
    WarmupDecayLR, the reference's), after global-norm clipping. ``head_lr_scale`` multiplies
    the updates of the exit heads' LoRA factors (every leaf under a ``heads`` key), i.e. their
    learning rate (docs/method.md §12); 1 is the reference."""
    warmup_steps = max(0, min(warmup_steps, total_steps))
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup_steps, 1)),
         optax.linear_schedule(lr, 0.0, max(total_steps - warmup_steps, 1))],
        [warmup_steps])
    opt = optax.chain(optax.clip_by_global_norm(clip) if clip else optax.identity(),
                      optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay),
                      _scale_heads(head_lr_scale) if head_lr_scale != 1 else optax.identity())
    return opt, schedule


def _scale_heads(factor: float) -> optax.GradientTransformation:
    """Multiplies the updates of every leaf under a ``heads`` key by ``factor``."""

    def scale(path, u):
        return u * factor if any(getattr(k, "key", None) == "heads" for k in path) else u

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
