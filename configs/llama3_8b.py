"""Meta-Llama-3-8B with the paper's recipe (METHOD.md §7, as ``configs/mistral_7b.py``), for a
16-chip TPU slice.

    python -m mrr_jax.train --config configs/llama3_8b.py:stage1 --workdir gs://b/s1 \\
        --config.model.path=/data/Meta-Llama-3-8B --config.data.train=/data/train.jsonl

Paths are placeholders: ``--config.model.path=...`` must name a Hugging Face directory of
meta-llama/Meta-Llama-3-8B (safetensors, bfloat16 is fine), ``--config.data.train=...``
FlagEmbedding JSONL (comma-separated for several), and for stage 2
``--config.model.init_adapters="('<stage-1 workdir>/adapters/stage1',)"``. ``data.dev`` is
empty (no periodic evaluation); ``--config.data.dev=dev.jsonl`` turns it on.

ARG (the stage): ``stage1`` (default) | ``vertical`` | ``horizontalR`` (one H-LoRA for ratio R,
e.g. ``horizontal4``, as each horizontal run of the reference) | ``horizontal`` (H(2), H(4),
H(8) in one run) | ``joint`` -- see ``configs/mistral_7b.py``.

Llama-3-8B has 32 layers, like Mistral-7B: exits 4..32, compression candidates 4, 8, ..., 28
(the default, every 4th layer below L), anchors 8, 16, 24, 32 (the default, every 8th and L).
Its "Yes" is one token of its tokenizer, so the exit heads start from that LM-head row as for
Mistral. The recipe: LoRA r=32, alpha=64, dropout 0.1 on q, k, v, o, gate, up, down, heads;
groups of 16; lengths 32 + 192; 128 queries per step = 32 x 4 accumulated; lr 2e-4 (stage 2:
2e-5, CE only), warm-up 10%; one epoch; bfloat16 compute, remat; save every 100 (stage 2: 500).

Mesh, for a v5e-16 or v4-32 slice (16 chips): ``data=-1, fsdp=8, tensor=1``. The frozen base is
held in float32 on device, 8.03 B parameters = 32 GB (its 128 K-token embedding and LM head are
4 GB of that), i.e. 4 GB a chip over fsdp=8 (D = 4096 splits evenly), which leaves a 16 GB v5e
chip room for one gathered layer, the LoRA/Adam state and its 32 rows of activations. On
smaller chips raise ``mesh.fsdp`` to 16.
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
    c.model.path = "/path/to/Meta-Llama-3-8B"  # override: --config.model.path=...
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
    # compress.layers = () and loss.anchor_every = 8 (defaults): 4..28 and 8, 16, 24, 32.
    c.optim.lr = 2e-4
    c.optim.warmup_ratio = 0.1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 8, 1
    c.train.steps = 0  # one epoch
    c.train.remat = True
    c.train.save_every = 100
    c.eval.plans = ("full", "depth=24", "depth=16", "compress=4:2", "compress=4:8",
                    "depth=24 compress=8:4")
    c.eval.group_size = 16
    if c.stage != "stage1":  # stage 2: compensation LoRA, CE only, lr / 10
        c.model.init_adapters = ("/path/to/stage1/adapters/stage1",)  # override
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-5
        c.train.save_every = 500
    return c
