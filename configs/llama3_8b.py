"""Meta-Llama-3-8B with the paper's recipe (docs/method.md §7, stated in full in
``configs/mistral_7b.py``), for a 16-chip TPU slice.

    python -m mrr_jax.train --config configs/llama3_8b.py:stage1 --workdir /mnt/shared/s1 \\
        --config.model.path=/data/Meta-Llama-3-8B --config.data.train=/data/train.jsonl

``--workdir`` is a local path (on a multi-host slice, a shared mount). Paths are placeholders:
``--config.model.path=...`` must name a Hugging Face directory of meta-llama/Meta-Llama-3-8B
(safetensors, bfloat16 is fine), ``--config.data.train=...`` FlagEmbedding JSONL
(comma-separated for several), and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"``. ``data.dev`` is
empty (no periodic evaluation); ``--config.data.dev=dev.jsonl`` turns it on.

ARG (the stage): ``stage1`` (default) | ``vertical`` | ``horizontalR`` (one H-LoRA for ratio R,
e.g. ``horizontal4``, as each horizontal run of the reference) | ``horizontal`` (H(2), H(4),
H(8) in one run) | ``joint`` -- see ``configs/mistral_7b.py``.

Llama-3-8B has 32 layers, like Mistral-7B: exits 4..32, compression candidates 4, 8, ..., 28
(``compress.layers = ()``, the default: every 4th layer below L), anchors 8, 16, 24, 32 (the
default, every 8th and L). Its "Yes" is one token of its tokenizer, so the exit heads start
from that LM-head row as for Mistral. Everything else is Mistral's recipe.

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=8, tensor=1``. The trainer keeps
the frozen base in host memory until it shards it, in ``model.dtype`` (bfloat16, 2 bytes a
parameter): 8.03 B parameters = 16.1 GB (its 128 K-token embedding and LM head are 2.1 GB of
that), i.e. 2.0 GB a chip over fsdp=8 (D = 4096 splits evenly), which leaves a 16 GB v5e chip
room for one gathered layer, the LoRA/Adam state and its 32 rows of activations. On smaller
chips raise ``mesh.fsdp`` to 16.
"""

from mrr_jax.training.config import paper_recipe


def get_config(arg: str = "stage1"):
    return paper_recipe(
        arg, model_path="/path/to/Meta-Llama-3-8B", fsdp=8,
        eval_plans=("full", "depth=24", "depth=16", "compress=4:2", "compress=4:8",
                    "depth=24 compress=8:4"))
