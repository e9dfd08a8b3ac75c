"""The trainer's data: ``data.train`` / ``data.dev`` resolved to files, the training batches
and the dev groups, tokenized with the model's tokenizer and prompt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrr_jax.inference.reranker import Reranker
from mrr_jax.inputs.groups import DevGroups, TrainBatch, TrainData, dev_groups


def data_paths(spec: str) -> list[Path]:
    """``a.jsonl,b.jsonl`` or ``example:<split>`` (the stdlib example set, built once into
    ``~/.cache/mrr_jax/example``, or ``$MRR_JAX_EXAMPLE_DIR``)."""
    if spec.startswith("example:"):
        from mrr_jax.data.example import build

        root = Path(os.environ.get("MRR_JAX_EXAMPLE_DIR",
                                   Path.home() / ".cache" / "mrr_jax" / "example"))
        f = root / f"{spec.split(':', 1)[1]}.jsonl"
        if not f.is_file():
            build(root)
        return [f]
    return [Path(p) for p in spec.split(",") if p]


def train_data(c, rr: Reranker) -> TrainData:
    """The config's training batches (``data.*``), tokenized for ``rr``."""
    return TrainData(data_paths(c.data.train), rr.tokenizer, rr.bos_token_id,
                     global_batch=c.data.queries_per_step, group_size=c.data.group_size,
                     seed=c.seed, query_max_len=c.data.query_max_len,
                     passage_max_len=c.data.passage_max_len, prompt=rr.prompt,
                     pad_id=rr.cfg.pad_token_id or 0,
                     passage_buckets=tuple(c.data.passage_buckets) or None)


def dev_set(c, rr: Reranker) -> DevGroups:
    """The config's dev groups (``data.dev``; ``eval.max_queries`` queries of
    ``eval.group_size`` candidates), tokenized as in training."""
    return dev_groups(data_paths(c.data.dev)[0], rr.tokenizer, rr.bos_token_id,
                      group_size=c.eval.group_size, max_queries=c.eval.max_queries,
                      seed=c.seed, query_max_len=c.data.query_max_len,
                      passage_max_len=c.data.passage_max_len, prompt=rr.prompt,
                      pad_id=rr.cfg.pad_token_id or 0)


def row_aligned(b: TrainBatch) -> dict[str, np.ndarray]:
    """Batch arrays with the teacher per row ([Q, G] -> [R]) so every array shards by rows."""
    a = b.arrays()
    g = b.group_size
    a["teacher"] = a["teacher"].reshape(-1)
    a["teacher_mask"] = np.repeat(a["teacher_mask"], g)
    return a
