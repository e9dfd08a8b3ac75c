"""Mistral-7B-v0.1, the paper's training recipe exactly (docs/method.md §7) for a 16-chip TPU slice.

    python -m mrr_jax.train --config configs/mistral_7b.py:stage1 --workdir /mnt/shared/s1 \\
        --config.model.path=/data/Mistral-7B-v0.1 --config.data.train=/data/train.jsonl
    python -m mrr_jax.train --config configs/mistral_7b.py:vertical --workdir /mnt/shared/v \\
        --config.model.path=/data/Mistral-7B-v0.1 --config.data.train=/data/train.jsonl \\
        --config.model.init_adapters="('/mnt/shared/s1/adapters/stage1',)"
    python -m mrr_jax.train --config configs/mistral_7b.py:horizontal4 --workdir /mnt/shared/h4 ...

``--workdir`` is a local path; on a multi-host slice, a mount every host shares. Paths are
placeholders: ``--config.model.path=...`` must name a Hugging Face directory of
mistralai/Mistral-7B-v0.1 (safetensors, bfloat16 is fine; no hub downloads here),
``--config.data.train=a.jsonl,b.jsonl`` FlagEmbedding JSONL, and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"`` the stage-1 adapter
folded into the base. ``data.dev`` is empty (no periodic evaluation); give
``--config.data.dev=dev.jsonl`` to evaluate ``eval.plans`` on it.

ARG (the stage; ``mrr_jax.training.config.parse_stage``):

- ``stage1`` (default): cascaded self-distillation; ratio in {1, 2, 4, 8} drawn per step, each of
  layers 4, 8, ..., 28 compresses with p=0.5; anchors 8, 16, 24, 32; lr 2e-4; save every 100.
- ``vertical``: V-LoRA, ratio 1, CE only at every exit, lr 2e-5, save every 500.
- ``horizontalR`` (``horizontal2``, ``horizontal4``, ``horizontal8``, ...): one H-LoRA for the
  fixed ratio R, as each horizontal run of the reference; CE only, lr 2e-5, save every 500.
  ``horizontal`` alone trains H(2), H(4) and H(8) in one run, each on the steps that drew its
  ratio (a third of the steps each); ``--config.compress.ratios=(4,)`` picks any other set.
- ``joint``: V and H(2), H(4), H(8) together (as the paper describes), ratios {1, 2, 4, 8}.

The recipe (``mrr_jax.training.config.paper_recipe``, which every big-model config uses): LoRA
r=32, alpha=64, dropout 0.1 on q, k, v, o, gate, up, down and the exit heads; groups of 16
(1 positive + 15 negatives); queries cut at 32 tokens, passages at 192; 128 queries (2,048
pairs) per optimizer step = 32 queries per micro-batch x 4 accumulated; AdamW (0.9, 0.999,
eps 1e-8, no weight decay, clip 1.0), warm-up 10% then linear decay; one epoch
(``train.steps=0``); bfloat16 compute, the frozen base stored in bfloat16 too
(``model.dtype``); rematerialisation per layer (gradient checkpointing); exits 4..32 (4..L); start
layer 4 and the "Yes" LM-head row for the exit heads; seed 42.

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=8, tensor=1`` (data = 2 there; a
larger slice only grows ``data``). The trainer keeps the frozen base in host memory until it
shards it onto the mesh, in ``model.dtype`` (bfloat16, 2 bytes a parameter): 7.24 B parameters
= 14.5 GB, nearly a whole 16 GB v5e chip, so it is sharded: over fsdp=8 that is 1.8 GB a chip
(the model axis D = 4096 splits evenly), which leaves a 16 GB v5e chip room for the gathered
layer, the LoRA/Adam state (~88 M parameters) and the activations of its 32 of the 512 rows a
micro-batch has (224 tokens each, rematerialised). On chips with less memory raise
``mesh.fsdp`` to 16. The 512 rows of a micro-batch must split over data x fsdp devices.
"""

from mrr_jax.training.config import paper_recipe

NUM_LAYERS = 32  # Mistral-7B-v0.1: compress.layers 4, 8, ..., 28; anchors 8, 16, 24, 32


def get_config(arg: str = "stage1"):
    return paper_recipe(
        arg, model_path="/path/to/Mistral-7B-v0.1", fsdp=8, num_layers=NUM_LAYERS,
        eval_plans=("full", "depth=24", "depth=16", "compress=4:2", "compress=4:8",
                    "depth=24 compress=8:4"))
