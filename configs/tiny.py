"""A random 6-layer model on the stdlib example data: the whole loop in seconds on CPU.

    python -m mrr_jax.train --config configs/tiny.py --workdir /tmp/tiny
    python -m mrr_jax.train --config configs/tiny.py:vertical --workdir /tmp/tiny_v \\
        --config.model.init_adapters="('/tmp/tiny/adapters/stage1',)"

ARG (optional) is the stage: stage1 (default), vertical, horizontal or joint.
"""

from mrr_jax.training.config import default_config


def get_config(arg: str = "stage1"):
    c = default_config()
    c.stage = arg or "stage1"
    c.model.path = "random"
    c.model.start_layer = 2
    c.data.group_size = 4
    c.data.queries_per_step = 4
    c.data.query_max_len = 16
    c.data.passage_max_len = 48
    c.lora.rank = 4
    c.lora.alpha = 8.0
    c.compress.layers = (2, 4)
    c.loss.anchor_every = 2
    c.optim.lr = 1e-3
    c.train.steps = 6
    c.train.save_every = 2
    c.eval.plans = ("full", "depth=4", "compress=2:2")
    c.eval.max_queries = 16
    c.eval.group_size = 4
    if c.stage != "stage1":
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.compress.ratios = (2,) if c.stage == "horizontal" else (1, 2, 4)
    return c
