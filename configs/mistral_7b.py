"""Mistral-7B-v0.1: the paper's training recipe exactly (METHOD.md §7), for a 16-chip TPU slice.

    python -m mrr_jax.train --config configs/mistral_7b.py:stage1 --workdir gs://b/s1 \\
        --config.model.path=/data/Mistral-7B-v0.1 --config.data.train=/data/train.jsonl
    python -m mrr_jax.train --config configs/mistral_7b.py:vertical --workdir gs://b/v \\
        --config.model.path=/data/Mistral-7B-v0.1 --config.data.train=/data/train.jsonl \\
        --config.model.init_adapters="('gs://b/s1/adapters/stage1',)"
    python -m mrr_jax.train --config configs/mistral_7b.py:horizontal4 --workdir gs://b/h4 ...

Paths are placeholders: ``--config.model.path=...`` must name a Hugging Face directory of
mistralai/Mistral-7B-v0.1 (safetensors, bfloat16 is fine; no hub downloads here),
``--config.data.train=a.jsonl,b.jsonl`` FlagEmbedding JSONL, and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"`` the stage-1 adapter
folded into the base. ``data.dev`` is empty (no periodic evaluation); give
``--config.data.dev=dev.jsonl`` to evaluate ``eval.plans`` on it.

ARG (the stage):

- ``stage1`` (default): cascaded self-distillation; ratio in {1, 2, 4, 8} drawn per step, each of
  layers 4, 8, ..., 28 compresses with p=0.5; anchors 8, 16, 24, 32; lr 2e-4; save every 100.
- ``vertical``: V-LoRA, ratio 1, CE only at every exit, lr 2e-5, save every 500.
- ``horizontalR`` (``horizontal2``, ``horizontal4``, ``horizontal8``, ...): one H-LoRA for the
  fixed ratio R, as each horizontal run of the reference; CE only, lr 2e-5, save every 500.
  ``horizontal`` alone trains H(2), H(4) and H(8) in one run, each on the steps that drew its
  ratio (a third of the steps each); ``--config.compress.ratios=(4,)`` picks any other set.
- ``joint``: V and H(2), H(4), H(8) together (as the paper describes), ratios {1, 2, 4, 8}.

The recipe: LoRA r=32, alpha=64, dropout 0.1 on q, k, v, o, gate, up, down and the exit heads;
groups of 16 (1 positive + 15 negatives); queries cut at 32 tokens, passages at 192;
128 queries (2,048 pairs) per optimizer step = 32 queries per micro-batch x 4 accumulated;
AdamW (0.9, 0.999, eps 1e-8, no weight decay, clip 1.0), warm-up 10% then linear decay;
one epoch (``train.steps=0``); bfloat16 compute with the frozen base kept in float32;
rematerialisation per layer (gradient checkpointing); exits 4..32; seed 42.

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=8, tensor=1`` (data = 2 there; a
larger slice only grows ``data``). The frozen base is held in float32 on device, 7.24 B
parameters = 29 GB, so it must be sharded: over fsdp=8 that is 3.6 GB a chip (the model axis
D = 4096 splits evenly), which leaves a 16 GB v5e chip room for the gathered layer, the
LoRA/Adam state (~88 M parameters) and the activations of its 32 of the 512 rows a micro-batch
has (224 tokens each, rematerialised). On chips with less memory raise ``mesh.fsdp`` to 16.
The 512 rows of a micro-batch must split over data x fsdp devices.
"""

import re

from mrr_jax.train_config import default_config

NUM_LAYERS = 32  # Mistral-7B-v0.1
H_RATIOS = (2, 4, 8)


def _stage(arg: str) -> tuple[str, tuple[int, ...]]:
    """(stage, compress.ratios) of ARG."""
    arg = arg or "stage1"
    if m := re.fullmatch(r"horizontal(\d+)", arg):
        r = int(m.group(1))
        if r < 2:
            raise ValueError(f"{arg!r}: a horizontal adapter needs a ratio >= 2")
        return "horizontal", (r,)
    ratios = {"stage1": (1, *H_RATIOS), "vertical": (1,), "horizontal": H_RATIOS,
              "joint": (1, *H_RATIOS)}
    if arg not in ratios:
        raise ValueError(f"config arg {arg!r}: expected stage1, vertical, horizontal, "
                         "horizontalR (e.g. horizontal4) or joint")
    return arg, ratios[arg]


def get_config(arg: str = "stage1"):
    c = default_config()
    c.stage, ratios = _stage(arg)
    c.seed = 42

    c.model.path = "/path/to/Mistral-7B-v0.1"  # override: --config.model.path=...
    c.model.start_layer = 4
    c.model.yes_token = "Yes"
    c.model.dtype = "bfloat16"

    c.data.train = "/path/to/train.jsonl"  # override: --config.data.train=a.jsonl,b.jsonl
    c.data.dev = ""  # --config.data.dev=dev.jsonl to evaluate eval.plans during training
    c.data.group_size = 16
    c.data.queries_per_step = 32
    c.data.accum = 4  # 32 x 4 = 128 queries per optimizer step
    c.data.query_max_len = 32
    c.data.passage_max_len = 192

    c.lora.rank = 32
    c.lora.alpha = 64.0
    c.lora.dropout = 0.1
    c.lora.targets = ("q", "k", "v", "o", "gate", "up", "down", "heads")

    c.compress.ratios = ratios
    c.compress.layers = tuple(range(4, NUM_LAYERS, 4))  # 4, 8, ..., 28
    c.compress.prob = 0.5
    c.compress.mode = "merge"

    c.loss.exits = "all"
    c.loss.anchor_every = 8  # anchors 8, 16, 24 and 32

    c.optim.lr = 2e-4
    c.optim.warmup_ratio = 0.1

    c.mesh.data = -1
    c.mesh.fsdp = 8
    c.mesh.tensor = 1

    c.train.steps = 0  # one epoch
    c.train.epochs = 1
    c.train.remat = True
    c.train.save_every = 100

    c.eval.plans = ("full", "depth=24", "depth=16", "compress=4:2", "compress=4:8",
                    "depth=24 compress=8:4")
    c.eval.group_size = 16

    if c.stage != "stage1":  # stage 2: compensation LoRA, CE only, lr / 10 (METHOD.md §6-7)
        c.model.init_adapters = ("/path/to/stage1/adapters/stage1",)  # override
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-5
        c.train.save_every = 500
    return c
