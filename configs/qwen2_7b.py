"""Qwen2-7B with the paper's recipe (docs/method.md §7; in full in ``configs/mistral_7b.py``),
for a 16-chip TPU slice.

    python -m mrr_jax.train --config configs/qwen2_7b.py:stage1 --workdir /mnt/shared/s1 \\
        --config.model.path=/data/Qwen2-7B --config.data.train=/data/train.jsonl

``--workdir`` is a local path (on a multi-host slice, a shared mount). Paths are placeholders:
``--config.model.path=...`` must name a Hugging Face directory of Qwen/Qwen2-7B (safetensors,
bfloat16 is fine), ``--config.data.train=...`` FlagEmbedding JSONL (comma-separated for
several), and for stage 2 ``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"``.
``data.dev`` is empty (no periodic evaluation); ``--config.data.dev=dev.jsonl`` turns it on.

ARG (the stage): ``stage1`` (default) | ``vertical`` | ``horizontalR`` (one H-LoRA for ratio R,
e.g. ``horizontal4``, as each horizontal run of the reference) | ``horizontal`` (H(2), H(4),
H(8) in one run) | ``joint`` -- see ``configs/mistral_7b.py``.

Qwen2-7B has 28 layers: exits 4..28, compression candidates 4, 8, ..., 24
(``compress.layers = ()``, the default: every 4th layer below L), anchors 8, 16, 24, 28 (the
default, every 8th and L); the eval depths are 20 and 12 (L - 8, L - 16). Its "Yes" is one
token of its tokenizer, so the exit heads start from that LM-head row as for Mistral. LoRA
targets are Mistral's; the q/k/v biases stay frozen. Everything else is Mistral's recipe.

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=8, tensor=1``. The trainer keeps
the frozen base in host memory until it shards it, in ``model.dtype`` (bfloat16, 2 bytes a
parameter): 7.62 B parameters = 15.2 GB, i.e. 1.9 GB a chip over fsdp=8 (D = 3584 splits
evenly), which leaves a 16 GB v5e chip room for one gathered layer, the LoRA/Adam state and
its 32 rows of activations. On smaller chips raise ``mesh.fsdp`` to 16.
"""

from mrr_jax.training.config import paper_recipe


def get_config(arg: str = "stage1"):
    return paper_recipe(
        arg, model_path="/path/to/Qwen2-7B", fsdp=8,
        eval_plans=("full", "depth=20", "depth=12", "compress=4:2", "compress=4:8",
                    "depth=20 compress=8:4"))
