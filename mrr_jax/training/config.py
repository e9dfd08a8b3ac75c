"""Every training setting, with its default and meaning, in one place.

``configs/<name>.py`` start from :func:`default_config` and change what they need (big_vision
style); ``--config.key=value`` on the command line changes one more, and a key that is not here
is an error. Stages (METHOD.md §5-6):

- ``stage1``: cascaded self-distillation over sampled sub-models; trains the ``stage1`` adapter.
- ``vertical``: V-LoRA on top of the folded ``init_adapters`` (stage 1), CE only, ratio 1.
- ``horizontal``: one H-LoRA per ratio in ``compress.ratios`` (each run of the reference
  trains one; here one run may train several, each only on steps that drew its ratio).
- ``joint``: V and every H(r) trained together, as the paper describes: a step that draws ratio
  r trains V + H(r) (ratio 1: V alone).

:func:`paper_recipe` is :func:`default_config` with the paper's training recipe (METHOD.md §7)
applied, for one model and one stage; the big-model configs (``configs/mistral_7b.py`` states
it in full) add only the model's path, mesh and eval plans.
"""

from __future__ import annotations

import re
from typing import Any

import ml_collections

from mrr_jax.runtime.digest import json_digest
from mrr_jax.runtime.pyconfig import ConfigError
from mrr_jax.weights.adapters import AdapterRole

STAGES = ("stage1", "vertical", "horizontal", "joint")
PAPER_H_RATIOS = (2, 4, 8)  # the paper's horizontal (H-LoRA) ratios
# train.* settings a resumed run may change (they do not change the result).
RESUMABLE_TRAIN_KEYS = ("log_every", "eval_every", "progress", "save_every", "keep")


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.stage = "stage1"
    c.seed = 42

    c.model = ml_collections.ConfigDict()
    c.model.path = "smollm2"  # HF dir, .gguf, "smollm2" (the packaged model) or "random"
    c.model.start_layer = 4
    c.model.yes_token = "Yes"
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16
    # Only for path="random": a random Llama with SmolLM2's tokenizer (plumbing, tests).
    c.model.random = ml_collections.ConfigDict(dict(
        num_layers=6, hidden_size=32, intermediate_size=64, num_heads=4, num_kv_heads=2,
        head_dim=8))
    # Adapters folded into the frozen base before training (stage 2: the stage-1 adapter).
    c.model.init_adapters = ()

    c.data = ml_collections.ConfigDict()
    c.data.train = "example:train"  # FlagEmbedding JSONL path(s), comma-separated, or example:
    c.data.dev = "example:dev"
    c.data.group_size = 16  # 1 positive + 15 negatives
    c.data.queries_per_step = 4  # queries per micro-batch, all processes together
    c.data.accum = 1  # micro-batches per optimizer step
    c.data.query_max_len = 32
    c.data.passage_max_len = 192
    c.data.passage_buckets = ()  # passage region sizes; () = one, passage_max_len

    c.lora = ml_collections.ConfigDict(dict(
        rank=32, alpha=64.0, dropout=0.1,
        targets=("q", "k", "v", "o", "gate", "up", "down", "heads")))

    c.compress = ml_collections.ConfigDict()
    c.compress.ratios = (1, 2, 4, 8)  # drawn uniformly per step
    c.compress.layers = ()  # candidate layers; () = every 4th from 4 below num_layers
    c.compress.prob = 0.5  # each candidate layer compresses with this probability
    c.compress.mode = "merge"

    c.loss = ml_collections.ConfigDict()
    c.loss.exits = "all"  # "all" (Matryoshka) or "last" (fine-tune the last exit only)
    c.loss.anchor_every = 8  # anchors: every 8th layer and the last
    c.loss.teacher = "anchors"  # anchors | final | next
    c.loss.temperature = 1.0
    c.loss.ce = 1.0
    c.loss.external = 1.0  # soft CE to the data's teacher scores, where present
    c.loss.self = 1.0  # cascaded self-distillation (0 for stage 2: CE only)

    c.optim = ml_collections.ConfigDict(dict(
        lr=2e-4, warmup_ratio=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip=1.0))

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))

    c.train = ml_collections.ConfigDict()
    c.train.steps = 0  # optimizer steps; 0 = epochs x steps per epoch
    c.train.epochs = 1
    c.train.log_every = 1
    c.train.eval_every = 0  # 0 = only at the start and the end
    c.train.save_every = 50
    c.train.keep = 2  # checkpoints kept
    c.train.remat = False
    c.train.progress = True

    c.eval = ml_collections.ConfigDict()
    c.eval.plans = ("full",)
    c.eval.max_queries = 64
    c.eval.group_size = 16
    c.eval.batch_size = 32
    return c


def parse_stage(arg: str) -> tuple[str, tuple[int, ...]]:
    """(stage, compress.ratios) of a paper-recipe config's ARG: ``stage1`` (also ``""``) and
    ``joint`` take ratios 1, 2, 4, 8; ``vertical`` ratio 1; ``horizontal`` 2, 4, 8 (one H-LoRA
    each, in one run); ``horizontalR`` (e.g. ``horizontal4``) the one ratio R >= 2."""
    arg = arg or "stage1"
    if m := re.fullmatch(r"horizontal(\d+)", arg):
        r = int(m.group(1))
        if r < 2:
            raise ValueError(f"{arg!r}: a horizontal adapter needs a ratio >= 2")
        return "horizontal", (r,)
    ratios = {"stage1": (1, *PAPER_H_RATIOS), "vertical": (1,), "horizontal": PAPER_H_RATIOS,
              "joint": (1, *PAPER_H_RATIOS)}
    if arg not in ratios:
        raise ValueError(f"config arg {arg!r}: expected stage1, vertical, horizontal, "
                         "horizontalR (e.g. horizontal4) or joint")
    return arg, ratios[arg]


def paper_recipe(arg: str = "stage1", *, model_path: str, fsdp: int,
                 eval_plans: tuple[str, ...],
                 num_layers: int | None = None) -> ml_collections.ConfigDict:
    """:func:`default_config` with the paper's recipe (METHOD.md §7; stated in full in
    ``configs/mistral_7b.py``) for the stage ARG names (:func:`parse_stage`).

    ``model_path`` is the placeholder ``--config.model.path=...`` replaces; the mesh is
    ``data=-1, fsdp=fsdp, tensor=1``; ``eval_plans`` are evaluated on ``data.dev`` (empty here:
    none until ``--config.data.dev=...``). ``num_layers``, if given, spells out the compression
    candidates 4, 8, ... below it; ``None`` leaves ``compress.layers = ()``, which the trainer
    reads as the same layers."""
    c = default_config()
    c.stage, ratios = parse_stage(arg)
    c.seed = 42

    c.model.path = model_path  # override: --config.model.path=...
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
    if num_layers is not None:
        c.compress.layers = tuple(range(4, num_layers, 4))
    c.compress.prob = 0.5
    c.compress.mode = "merge"

    c.loss.exits = "all"
    c.loss.anchor_every = 8  # anchors: every 8th layer and the last

    c.optim.lr = 2e-4
    c.optim.warmup_ratio = 0.1  # then linear decay
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8  # AdamW
    c.optim.weight_decay = 0.0
    c.optim.clip = 1.0

    c.mesh.data = -1
    c.mesh.fsdp = fsdp
    c.mesh.tensor = 1

    c.train.steps = 0  # one epoch
    c.train.epochs = 1
    c.train.remat = True
    c.train.save_every = 100

    c.eval.plans = tuple(eval_plans)
    c.eval.group_size = 16

    if c.stage != "stage1":  # stage 2: compensation LoRA, CE only, lr / 10 (METHOD.md §6-7)
        c.model.init_adapters = ("/path/to/stage1/adapters/stage1",)  # override
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-5
        c.train.save_every = 500
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` (naming the key) on values the trainer cannot use; the rest
    are checked where they are used (plans, paths, shapes)."""
    if c.stage not in STAGES:
        raise ConfigError(f"stage must be one of {STAGES}, got {c.stage!r}")
    bad = [p for p in c.eval.plans if not isinstance(p, str)]
    if bad:
        raise ConfigError(f"eval.plans must be plan strings (e.g. 'full', 'depth=20'), got "
                          f"{bad!r}")
    ratios = tuple(c.compress.ratios)
    if not ratios or any(isinstance(r, bool) or not isinstance(r, int) or r < 1
                         for r in ratios):
        raise ConfigError(f"compress.ratios must be ints >= 1, got {ratios!r}")


def roles_of(c: ml_collections.ConfigDict, ratios: tuple[int, ...] | None = None
             ) -> list[AdapterRole]:
    """The adapters a stage trains (see the module docstring), for ``ratios`` (default
    ``compress.ratios``): stage1 -> ``stage1``; vertical -> ``vertical``; horizontal -> ``h<r>``
    per ratio r > 1; joint -> ``vertical`` and ``h<r>`` per ratio r > 1."""
    ratios = tuple(c.compress.ratios) if ratios is None else ratios
    hs = [AdapterRole("horizontal", int(r)) for r in ratios if r > 1]
    if c.stage == "stage1":
        return [AdapterRole("stage1")]
    if c.stage == "vertical":
        return [AdapterRole("vertical")]
    if c.stage == "horizontal":
        if not hs:
            raise ConfigError("stage 'horizontal' needs compress.ratios with a ratio > 1")
        return hs
    return [AdapterRole("vertical"), *hs]


def training_fingerprint(resolved: dict[str, Any]) -> str:
    """The 16-hex-digit digest of a resolved config (``c.to_dict()``) without the settings a
    resumed run may change (``eval.*`` and :data:`RESUMABLE_TRAIN_KEYS`): checkpoints and saved
    adapters carry it as ``config_hash``, and a run resumes only from checkpoints with its
    own."""
    keep = {k: v for k, v in resolved.items() if k != "eval"}
    keep["train"] = {k: v for k, v in resolved["train"].items()
                     if k not in RESUMABLE_TRAIN_KEYS}
    return json_digest(keep, 16)
