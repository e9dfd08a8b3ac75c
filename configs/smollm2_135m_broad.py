"""SmolLM2-135M-Instruct, the best 2-core recipe on the broad training set (issue 17, item 1).

    python -m mrr_jax.data.broad --out data/broad
    python -m mrr_jax.train --config configs/smollm2_135m_broad.py --workdir out/broad

``configs/smollm2_135m_best.py`` (BM25 teacher, groups of 8, 2 queries a step, lr 2e-3 /
2e-4, 450 stage-1 / 60 stage-2 steps, the six-plan grid) with its training rows taken from the
broad set (``python -m mrr_jax.data.broad``: docstrings, PyPI descriptions, READMEs, docs,
changelogs, specifications and licenses of pinned PyPI and Debian packages, about 8,400
training queries) instead of the stdlib example set: ``train_bm25.jsonl`` (BM25 scores as the
external teacher) for training, the set's own ``dev.jsonl`` for evaluation during training.
The step count is the best recipe's, so the two differ only in their data (450 steps see 900
of the ~8,400 queries); ``--config.data.dev=example:dev`` scores on the example set's dev
split, to compare with the runs trained on it. The folder is ``$MRR_JAX_BROAD_DIR``, default
``data/broad``.
ARG: as ``configs/smollm2_135m.py`` (stage1 by default).
"""

import os
from pathlib import Path

from mrr_jax.runtime.pyconfig import load_config


def get_config(arg: str = "stage1"):
    base = Path(__file__).with_name("smollm2_135m_best.py")
    c = load_config(f"{base}:{arg or 'stage1'}")
    data = Path(os.environ.get("MRR_JAX_BROAD_DIR", "data/broad"))
    c.data.train = str(data / "train_bm25.jsonl")  # as the best recipe, every stage
    c.data.dev = str(data / "dev.jsonl")
    return c
