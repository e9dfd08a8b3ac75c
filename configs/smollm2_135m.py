"""SmolLM2-135M-Instruct (30 layers, from its PyPI package) on the stdlib example data: the real
model that trains on this CPU.

    python -m mrr_jax.train --config configs/smollm2_135m.py --workdir out/s1
    python -m mrr_jax.train --config configs/smollm2_135m.py:vertical --workdir out/v \\
        --config.model.init_adapters="('out/s1/adapters/stage1',)"

ARG: stage1 (default) | vertical | horizontal | joint. The reference's recipe (docs/method.md §7)
scaled to a 2-core CPU (about 16 s a step): groups of 4 instead of 16, 4 queries per step
instead of 128, queries cut at 16 tokens and passages at 48, LoRA r=16, lr 2e-3 for a run of 40
steps; the sampling of sub-models, the loss and the schedule's shape are the paper's. Stage 2
uses lr / 10 as the reference. At this budget (160 training queries) the model does not yet
learn to rank; ``configs/smollm2_135m_long.py`` (300 steps, BM25 as teacher) does: see the
README's results.
Exits 4..30, compression candidates 4, 8, ..., 28, anchors 8, 16, 24, 30.
"""

from mrr_jax.training.config import default_config


def get_config(arg: str = "stage1"):
    c = default_config()
    c.stage = arg or "stage1"
    c.model.path = "smollm2"
    c.data.group_size = 4
    c.data.queries_per_step = 4
    c.data.query_max_len = 16
    c.data.passage_max_len = 48
    c.lora.rank = 16
    c.lora.alpha = 32.0
    c.optim.lr = 2e-3
    c.train.steps = 40
    c.train.save_every = 20
    c.train.eval_every = 0
    c.train.remat = False
    c.eval.plans = ("full", "depth=20", "depth=12", "compress=8:2", "depth=20 compress=4:2,12:2",
                    "depth=16 compress=4:4")
    c.eval.max_queries = 32
    c.eval.group_size = 8
    if c.stage != "stage1":  # stage 2: CE only, lr / 10 (docs/method.md §6)
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-4  # stage 1 / 10, as the reference
        if c.stage == "horizontal":
            c.compress.ratios = (2,)
        elif c.stage == "joint":
            c.compress.ratios = (2, 4)
    return c
