"""Scoring-job config: SmolLM2-135M re-ranks BM25's top 20 on the stdlib example dataset.

    python -m mrr_jax.data.example data/stdlib
    python -m mrr_jax.score --config configs/score_stdlib.py:dev --out out/score_dev
    python -m mrr_jax.score --config configs/score_stdlib.py:test --out out/score_test --shard 0/2

ARG is the split (dev or test; default dev); any flag given on the command line overrides the
matching key here. Set ``data`` to where the example dataset was built.
"""

import ml_collections


def get_config(arg: str = "dev") -> ml_collections.ConfigDict:
    split = arg or "dev"
    if split not in ("dev", "test", "train"):
        raise ValueError(f"split must be dev, test or train, got {split!r}")
    data = "data/stdlib"
    c = ml_collections.ConfigDict()
    c.model = "smollm2"
    c.corpus = f"{data}/corpus.jsonl"
    c.queries = f"{data}/queries.jsonl"
    c.run = f"{data}/bm25/{split}.trec"
    c.top_k = 20
    # full, depth=20 and depth=12 share one pass (exits); the width cut gets its own.
    c.plan = ["full", "depth=20", "depth=12", "depth=20 compress=4:2,12:2"]
    c.batch_size = 16
    c.max_length = 256
    return c
