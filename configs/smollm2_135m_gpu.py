"""SmolLM2-135M-Instruct at a budget one GPU makes cheap: the ablation's and the demo's recipe
scaled up, for ``python -m mrr_jax.ablation`` on one GPU (CUDA build of jax, ``make
install-gpu``).

    python -m mrr_jax.ablation --config configs/smollm2_135m_gpu.py --out out/ablation_gpu

``configs/smollm2_135m_long.py`` (BM25 scores as the external teacher) with groups of 16 (1
positive + 15 BM25 negatives), 8 queries a step (128 rows), queries cut at 32 tokens and
passages at 128, 400 steps (3,200 training queries, about two passes over the 1,467 of the
example set), bfloat16 compute, the demo's six-plan grid. Stage 2 (``:joint``): 100 steps.
Not run on a GPU yet (none was lent to this work); tested on CPU only through the tiny config
(the ablation's plumbing) and ``tests/test_configs.py`` (it loads for every stage).
ARG: as ``configs/smollm2_135m.py`` (stage1 by default).
"""

from pathlib import Path

from mrr_jax.runtime.pyconfig import load_config


def get_config(arg: str = "stage1"):
    base = Path(__file__).with_name("smollm2_135m_long.py")
    c = load_config(f"{base}:{arg or 'stage1'}")
    c.model.dtype = "bfloat16"
    c.data.group_size = 16
    c.data.queries_per_step = 8
    c.data.query_max_len = 32
    c.data.passage_max_len = 128
    c.train.steps = 400 if c.stage == "stage1" else 100
    c.train.save_every = 100
    c.train.eval_every = 0
    c.eval.plans = ("full", "depth=20", "depth=12", "compress=8:2",
                    "depth=20 compress=4:2,12:2", "depth=16 compress=4:4")
    c.eval.group_size = 16
    return c
