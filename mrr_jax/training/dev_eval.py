"""Dev evaluation, shared by the trainer (``eval.plans`` during training) and ``train_eval``:
each plan's scores of the dev groups, per-query reciprocal rank and contrastive loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from mrr_jax.core.forward import score_forward
from mrr_jax.core.plan import Plan
from mrr_jax.data.metrics import evaluate_per_query
from mrr_jax.inference.reranker import Reranker
from mrr_jax.inputs.groups import DevGroups


def eval_plan(text: str, num_layers: int) -> Plan:
    """An ``eval.plans`` entry ("full" or plan syntax) resolved for a model of ``num_layers``."""
    return Plan.parse(text).resolve(num_layers)


def eval_batch_queries(c) -> int:
    """Dev queries per scoring batch (``eval.batch_size`` rows)."""
    return max(1, c.eval.batch_size // c.eval.group_size)


def plan_scores(rr: Reranker, dev: DevGroups, plan: Plan, batch_queries: int) -> np.ndarray:
    """Scores [Qd, G] of the dev groups under ``plan`` (its last exit), with ``rr``'s adapters
    for that plan."""
    g = dev.batch.group_size
    scores = []
    for chunk, real in dev.chunks(batch_queries):
        a = {k: jnp.asarray(v) for k, v in chunk.arrays().items()
             if k not in ("teacher", "teacher_mask")}
        s = score_forward(rr.params, rr.heads, **a, padded_length=jnp.int32(0),
                          adapters=rr.adapters_for(plan), cfg=rr.cfg, plan=plan,
                          exits=(plan.depth,), start_layer=rr.start_layer)
        scores.append(np.asarray(s[0]).reshape(-1, g)[:real])
    return np.concatenate(scores)


def dev_metrics(dev: DevGroups, s: np.ndarray) -> dict[str, np.ndarray]:
    """Per dev query (in dev order): ``rr`` (RR@10 of the positive) and ``loss`` (its
    contrastive CE, -log softmax of the positive) from scores [Qd, G]."""
    s = np.asarray(s, np.float64)
    top = s.max(1, keepdims=True)
    logp = s - top - np.log(np.exp(s - top).sum(1, keepdims=True))
    per_query = evaluate_per_query(dev.run(s), dev.qrels(), ["RR@10"])
    return {"rr": np.array([per_query[q]["RR@10"] for q in dev.qids]), "loss": -logp[:, 0]}


def evaluate(rr: Reranker, dev: DevGroups, plans: Sequence[str],
             batch_queries: int) -> dict[str, Any]:
    """Dev MRR@10 and contrastive loss (at the plan's last exit) per plan, with ``rr``'s
    adapters; the positive of each dev group is the only relevant candidate."""
    out: dict[str, Any] = {}
    for text in plans:
        m = dev_metrics(dev, plan_scores(rr, dev, eval_plan(text, rr.cfg.num_layers),
                                         batch_queries))
        out[text] = {"mrr@10": float(m["rr"].mean()), "loss": float(m["loss"].mean())}
    return out
