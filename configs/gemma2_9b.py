"""Gemma-2-9B with the paper's recipe (METHOD.md §7, as ``configs/mistral_7b.py``), for a
16-chip TPU slice.

    python -m mrr_jax.train --config configs/gemma2_9b.py:stage1 --workdir gs://b/s1 \\
        --config.model.path=/data/gemma-2-9b --config.data.train=/data/train.jsonl

Paths are placeholders: ``--config.model.path=...`` must name a Hugging Face directory of
google/gemma-2-9b (safetensors, bfloat16 is fine), ``--config.data.train=...`` FlagEmbedding
JSONL (comma-separated for several), and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"``. ``data.dev`` is
empty (no periodic evaluation); ``--config.data.dev=dev.jsonl`` turns it on.

ARG (the stage): ``stage1`` (default) | ``vertical`` | ``horizontalR`` (one H-LoRA for ratio R,
e.g. ``horizontal4``, as each horizontal run of the reference) | ``horizontal`` (H(2), H(4),
H(8) in one run) | ``joint`` -- see ``configs/mistral_7b.py``.

Gemma-2-9B has 42 layers: exits 4..42, compression candidates 4, 8, ..., 40 (the default, every
4th layer below L), anchors 8, 16, 24, 32, 40, 42 (the default, every 8th and L). The start
layer (4) and the head's token ("Yes", one token of Gemma's tokenizer) are the paper's: nothing
in Gemma-2 calls for others (its final-logit soft-cap applies to the LM head, not to the linear
exit heads). The recipe: LoRA r=32, alpha=64, dropout 0.1 on q, k, v, o, gate, up, down, heads;
groups of 16; lengths 32 + 192 (far inside the 4096-token sliding window); 128 queries per
step = 32 x 4 accumulated; lr 2e-4 (stage 2: 2e-5, CE only), warm-up 10%; one epoch; bfloat16
compute, remat; save every 100 (stage 2: 500).

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=16, tensor=1`` (data = 1 there;
a larger slice only grows ``data``). The frozen base is held in float32 on device, 9.24 B
parameters = 37 GB (its 256 K-token embedding, tied to the LM head, is 3.7 GB of that), i.e.
2.3 GB a chip over fsdp=16 (D = 3584 splits evenly), which leaves a 16 GB v5e chip room for one
gathered layer (256-wide heads, 14336-wide MLP), the LoRA/Adam state and its 32 rows of
activations.
"""

import re

from mrr_jax.train_config import default_config

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
    c.stage, c.compress.ratios = _stage(arg)
    c.model.path = "/path/to/gemma-2-9b"  # override: --config.model.path=...
    c.model.dtype = "bfloat16"
    c.data.train = "/path/to/train.jsonl"  # override: --config.data.train=...
    c.data.dev = ""
    c.data.group_size = 16
    c.data.queries_per_step = 32
    c.data.accum = 4  # 128 queries per optimizer step
    c.data.query_max_len = 32
    c.data.passage_max_len = 192
    c.lora.rank = 32
    c.lora.alpha = 64.0
    c.lora.dropout = 0.1
    # compress.layers = () and loss.anchor_every = 8 (defaults): 4..40 and 8, ..., 40, 42.
    c.optim.lr = 2e-4
    c.optim.warmup_ratio = 0.1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 16, 1
    c.train.steps = 0  # one epoch
    c.train.remat = True
    c.train.save_every = 100
    c.eval.plans = ("full", "depth=32", "depth=24", "compress=4:2", "compress=4:8",
                    "depth=32 compress=8:4")
    c.eval.group_size = 16
    if c.stage != "stage1":  # stage 2: compensation LoRA, CE only, lr / 10
        c.model.init_adapters = ("/path/to/stage1/adapters/stage1",)  # override
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-5
        c.train.save_every = 500
    return c
