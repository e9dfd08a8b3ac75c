"""SmolLM2-135M-Instruct, the recipe of ``make demo``: a stage-1 run that fits the demo's
45 minutes on 2 cores and learns to rank, then joint compensation.

    python -m mrr_jax.demo                      # uses this config
    python -m mrr_jax.train --config configs/smollm2_135m_demo.py --workdir out/s1

``configs/smollm2_135m_long.py`` (BM25 scores as the external teacher, groups of 8, 2 queries a
step) at lr 2e-3 instead of 5e-4, cut to 150 steps, with the demo's six-plan grid (two depth
cuts, a width cut, two depth + width cuts) as ``eval.plans``. Stage 2 (``:joint``): V + H(2) +
H(4), 40 steps, CE only, lr / 10 (2e-4). The learning rate is the lever that made the model
learn at this budget (README, "Which change makes it learn": at 200 steps, dev MRR@10 0.250 at
lr 5e-4 against 0.418 at 2e-3).
ARG: as ``configs/smollm2_135m.py`` (stage1 by default).
"""

from pathlib import Path

from mrr_jax.runtime.pyconfig import load_config


def get_config(arg: str = "stage1"):
    base = Path(__file__).with_name("smollm2_135m_long.py")
    c = load_config(f"{base}:{arg or 'stage1'}")
    c.train.steps = 150 if c.stage == "stage1" else 40
    c.optim.lr = 2e-3 if c.stage == "stage1" else 2e-4
    c.train.eval_every = 0
    c.eval.plans = ("full", "depth=20", "depth=12", "compress=8:2",
                    "depth=20 compress=4:2,12:2", "depth=16 compress=4:4")
    return c
