"""The BM25 row of the README's training table: BM25's MRR@10 on exactly the trainer's dev
groups (positive + first 7 negatives of each ``example:dev`` row; 32 queries as the run's own
eval with seed 42, and all 157), scored by the same ``dev_metrics``.

    .venv/bin/python docs/train_long/bm25_dev.py   # prints: 32 ... 0.4753 / 157 ... 0.5071
"""

import json
from pathlib import Path

import numpy as np

from mrr_jax.data import beir
from mrr_jax.data.example import bm25_scores
from mrr_jax.inputs.groups import dev_groups
from mrr_jax.inputs.template import load_tokenizer
from mrr_jax.training.dev_eval import dev_metrics
from mrr_jax.weights.assets import smollm2_dir

root = Path.home() / ".cache" / "mrr_jax" / "example"
tok, bos = load_tokenizer(smollm2_dir())
corpus = beir.load_corpus(root / "corpus.jsonl")
rows = [json.loads(line) for line in open(root / "dev.jsonl")]
by_passage = {d.passage: i for i, d in enumerate(corpus.values())}
scores = bm25_scores(corpus, {f"line{i + 1}": r["query"] for i, r in enumerate(rows)})
for max_queries in (32, 1000):
    dev = dev_groups(root / "dev.jsonl", tok, bos, group_size=8, max_queries=max_queries,
                     seed=42, query_max_len=16, passage_max_len=48)
    s = []
    for q, d in zip(dev.row_qid, dev.row_docid):
        r = rows[int(q[len("line"):]) - 1]
        kind, idx = d.split("#")[0][:3], int(d.split("#")[0][3:])
        s.append(scores[q][by_passage[(r["pos"] if kind == "pos" else r["neg"])[idx]]])
    m = dev_metrics(dev, np.array(s).reshape(-1, 8))
    print(max_queries, len(dev.qids), "queries: BM25 MRR@10", m["rr"].mean().round(4))
