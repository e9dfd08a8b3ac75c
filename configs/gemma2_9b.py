"""Gemma-2-9B with the paper's recipe (docs/method.md §7; in full in ``configs/mistral_7b.py``),
for a 16-chip TPU slice.

    python -m mrr_jax.train --config configs/gemma2_9b.py:stage1 --workdir /mnt/shared/s1 \\
        --config.model.path=/data/gemma-2-9b --config.data.train=/data/train.jsonl

``--workdir`` is a local path (on a multi-host slice, a shared mount). Paths are placeholders:
``--config.model.path=...`` must name a Hugging Face directory of google/gemma-2-9b
(safetensors, bfloat16 is fine), ``--config.data.train=...`` FlagEmbedding JSONL
(comma-separated for several), and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"``. ``data.dev`` is
empty (no periodic evaluation); ``--config.data.dev=dev.jsonl`` turns it on.

ARG (the stage): ``stage1`` (default) | ``vertical`` | ``horizontalR`` (one H-LoRA for ratio R,
e.g. ``horizontal4``, as each horizontal run of the reference) | ``horizontal`` (H(2), H(4),
H(8) in one run) | ``joint`` -- see ``configs/mistral_7b.py``.

Gemma-2-9B has 42 layers: exits 4..42, compression candidates 4, 8, ..., 40
(``compress.layers = ()``, the default: every 4th layer below L), anchors 8, 16, 24, 32, 40, 42
(the default, every 8th and L). The start layer (4) and the head's token ("Yes", one token of
Gemma's tokenizer) are the paper's: nothing in Gemma-2 calls for others (its final-logit
soft-cap applies to the LM head, not to the linear exit heads). The lengths, 32 + 192, are far
inside its 4096-token sliding window. Everything else is Mistral's recipe.

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=16, tensor=1`` (data = 1 there;
a larger slice only grows ``data``). The trainer keeps the frozen base in host memory until it
shards it, in ``model.dtype`` (bfloat16, 2 bytes a parameter): 9.24 B parameters = 18.5 GB (its
256 K-token embedding, tied to the LM head, is 1.8 GB of that), i.e. 1.2 GB a chip over
fsdp=16 (D = 3584 splits evenly), which leaves a 16 GB v5e chip room for one gathered layer
(256-wide heads, 14336-wide MLP), the LoRA/Adam state and its 32 rows of activations.
"""

from mrr_jax.training.config import paper_recipe


def get_config(arg: str = "stage1"):
    return paper_recipe(
        arg, model_path="/path/to/gemma-2-9b", fsdp=16,
        eval_plans=("full", "depth=32", "depth=24", "compress=4:2", "compress=4:8",
                    "depth=32 compress=8:4"))
