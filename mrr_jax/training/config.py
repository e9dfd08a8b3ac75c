"""Every training setting, with its default and meaning, in one place.

``configs/<name>.py`` start from :func:`default_config` and change what they need (big_vision
style); ``--config.key=value`` on the command line changes one more, and a key that is not here
is an error. Stages (docs/method.md §5-6):

- ``stage1``: cascaded self-distillation over sampled sub-models; trains the ``stage1`` adapter.
- ``vertical``: V-LoRA on top of the folded ``init_adapters`` (stage 1), CE only, ratio 1.
- ``horizontal``: one H-LoRA per ratio in ``compress.ratios`` (each run of the reference
  trains one; here one run may train several, each only on steps that drew its ratio).
- ``joint``: V and every H(r) trained together, as the paper describes: a step that draws ratio
  r trains V + H(r) (ratio 1: V alone).

:func:`paper_recipe` is :func:`default_config` with the paper's training recipe (docs/method.md §7)
applied, for one model and one stage; the big-model configs (``configs/mistral_7b.py`` states
it in full) add only the model's path, mesh and eval plans.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import ml_collections

from mrr_jax.core.lora import TARGETS as LORA_TARGETS
from mrr_jax.core.plan import MODES, Plan
from mrr_jax.runtime.digest import json_digest
from mrr_jax.runtime.pyconfig import ConfigError
from mrr_jax.training.losses import TEACHERS
from mrr_jax.weights.adapters import AdapterRole

STAGES = ("stage1", "vertical", "horizontal", "joint")
PAPER_H_RATIOS = (2, 4, 8)  # the paper's horizontal (H-LoRA) ratios
# train.* settings a resumed run may change (they do not change the result).
RESUMABLE_TRAIN_KEYS = ("log_every", "eval_every", "progress", "save_every", "keep",
                        "peak_tflops")
# train.* settings a resumed or finished run may change to train longer (or stop sooner, but
# not before the step its workdir has reached): the learning-rate schedule (warm-up and linear
# decay to 0) is then that of the new length from the step the run continues at.
EXTENDABLE_TRAIN_KEYS = ("steps", "epochs")


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.stage = "stage1"
    c.seed = 42

    c.model = ml_collections.ConfigDict()
    c.model.path = "smollm2"  # HF dir, .gguf, "smollm2" (the packaged model) or "random"
    c.model.start_layer = 4
    c.model.yes_token = "Yes"
    # "" = the reference's heads (the "Yes" row); "No" = the "Yes" row minus the "No" row
    # (log-odds heads, docs/method.md §12); saved adapters record it.
    c.model.no_token = ""
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
        lr=2e-4, warmup_ratio=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip=1.0,
        head_lr_scale=1.0))  # the exit heads' LoRA learns at lr * head_lr_scale (§12)

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
    # MFU in metrics.jsonl is against this peak (TFLOP/s per device); 0 = the chip's bfloat16
    # peak from mrr_jax.runtime.chips (none on a CPU: no MFU, FLOP/s only).
    c.train.peak_tflops = 0.0

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
    """:func:`default_config` with the paper's recipe (docs/method.md §7; stated in full in
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

    if c.stage != "stage1":  # stage 2: compensation LoRA, CE only, lr / 10 (docs/method.md §6-7)
        c.model.init_adapters = ("/path/to/stage1/adapters/stage1",)  # override
        c.loss.self = 0.0
        c.loss.external = 0.0
        c.optim.lr = 2e-5
        c.train.save_every = 500
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` on the first value the trainer cannot use, as one line that
    names the key, what it takes and the value: ``lora.rank: expected an int >= 1, got 0``.

    Checked here, before anything is loaded: every count and size (:data:`AT_LEAST`), every
    weight, rate and probability (:data:`RANGES`), the named choices (:data:`CHOICES`), the
    lists (ratios and layers ints >= 1, LoRA targets known, ``eval.plans`` each read by
    :meth:`Plan.parse <mrr_jax.core.plan.Plan.parse>`) and the stage's adapters. What needs the
    model (plan depths, compression layers, the mesh against the devices) is checked once it is
    loaded, before the first step."""
    if c.stage not in STAGES:
        _refuse("stage", f"one of {', '.join(STAGES)}", c.stage)
    for key, (low, note) in AT_LEAST.items():
        v = _get(c, key)
        if not _is_int(v) or v < low:
            _refuse(key, f"an int >= {low}" + (f" ({note})" if note else ""), v)
    if not _is_int(c.mesh.data) or not (c.mesh.data == -1 or c.mesh.data >= 1):
        _refuse("mesh.data", "an int >= 1, or -1 (the devices left)", c.mesh.data)
    for key, bounds in RANGES.items():
        v = _get(c, key)
        if not _is_number(v) or not _within(v, bounds):
            _refuse(key, f"a number {_interval(bounds)}", v)
    for key, choices in CHOICES.items():
        if _get(c, key) not in choices:
            _refuse(key, f"one of {', '.join(choices)}", _get(c, key))
    for key in ("compress.ratios", "compress.layers", "data.passage_buckets"):
        v = _get(c, key)
        if not isinstance(v, (tuple, list)) or not all(_is_int(x) and x >= 1 for x in v):
            _refuse(key, "a tuple of ints >= 1", v)
    for key in ("model.yes_token", "model.no_token"):
        v = _get(c, key)
        if not isinstance(v, str) or (key == "model.yes_token" and not v):
            _refuse(key, "a token's text (str)" + (", or '' for none" if "no" in key else ""),
                    v if isinstance(v, str) else repr(v))
    if not c.compress.ratios:
        _refuse("compress.ratios", "at least one ratio", c.compress.ratios)
    targets = c.lora.targets
    if not isinstance(targets, (tuple, list)) or not targets or \
            any(t not in LORA_TARGETS for t in targets):
        _refuse("lora.targets", f"a tuple of {', '.join(LORA_TARGETS)}", targets)
    check_plans(c.eval.plans)
    roles_of(c)  # the stage's adapters exist for these ratios


def check_plans(plans: Any, num_layers: int | None = None) -> None:
    """``eval.plans``: a tuple of plan texts, each read by ``Plan.parse`` (``"full"``,
    ``"depth=20 compress=8:2"``) and, given ``num_layers``, within the model; else a
    ConfigError naming ``eval.plans``."""
    if not isinstance(plans, (tuple, list)):
        _refuse("eval.plans", "a tuple of plan texts like ('full', 'depth=20')", plans)
    for text in plans:
        try:
            plan = Plan.parse(text)
            if num_layers is not None:
                plan.resolve(num_layers)
        except (TypeError, ValueError) as e:  # Plan.parse's two documented errors
            raise ConfigError(f"eval.plans: {e}") from None


# key: (minimum, what 0 means where it may be 0)
AT_LEAST = {
    "seed": (0, ""), "model.start_layer": (0, ""),
    **{f"model.random.{k}": (1, "") for k in ("num_layers", "hidden_size", "intermediate_size",
                                               "num_heads", "num_kv_heads", "head_dim")},
    **{f"data.{k}": (1, "") for k in ("group_size", "queries_per_step", "accum",
                                       "query_max_len", "passage_max_len")},
    "lora.rank": (1, ""), "loss.anchor_every": (1, ""), "mesh.fsdp": (1, ""),
    "mesh.tensor": (1, ""), "train.steps": (0, "0: train.epochs passes over the data"),
    "train.epochs": (1, ""), "train.log_every": (1, ""),
    "train.eval_every": (0, "0: only at the start and the end"), "train.save_every": (1, ""),
    "train.keep": (1, ""), "eval.max_queries": (1, ""), "eval.group_size": (1, ""),
    "eval.batch_size": (1, ""),
}
# key: (low, low included, high, high included); None: no bound
POSITIVE, NON_NEGATIVE = (0, False, None, False), (0, True, None, False)
UNIT, UNIT_OPEN = (0, True, 1, True), (0, True, 1, False)  # [0, 1] and [0, 1)
RANGES = {
    "lora.alpha": POSITIVE, "lora.dropout": UNIT_OPEN, "compress.prob": UNIT,
    "loss.temperature": POSITIVE, "loss.ce": NON_NEGATIVE, "loss.external": NON_NEGATIVE,
    "loss.self": NON_NEGATIVE, "optim.lr": POSITIVE, "optim.warmup_ratio": UNIT,
    "optim.b1": UNIT_OPEN, "optim.b2": UNIT_OPEN, "optim.eps": NON_NEGATIVE,
    "optim.weight_decay": NON_NEGATIVE, "optim.clip": NON_NEGATIVE,
    "optim.head_lr_scale": POSITIVE, "train.peak_tflops": NON_NEGATIVE,
}
CHOICES = {
    "model.dtype": ("float32", "bfloat16"), "compress.mode": MODES, "loss.exits": ("all", "last"),
    "loss.teacher": TEACHERS,
}


def _get(c: ml_collections.ConfigDict, key: str) -> Any:
    node = c
    for part in key.split("."):
        node = node[part]
    return node


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _within(v: float, bounds: tuple) -> bool:
    lo, lo_in, hi, hi_in = bounds
    return (v >= lo if lo_in else v > lo) and (hi is None or (v <= hi if hi_in else v < hi))


def _interval(bounds: tuple) -> str:
    """``> 0``, ``>= 0``, ``in [0, 1)``, ..."""
    lo, lo_in, hi, hi_in = bounds
    if hi is None:
        return f"{'>=' if lo_in else '>'} {lo}"
    return f"in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"


def _refuse(key: str, want: str, value: Any) -> None:
    shown = value if isinstance(value, str) else repr(value)
    raise ConfigError(f"{key}: expected {want}, got {shown}")


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


def config_diff(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """The dotted keys (``stage``, ``model.path``) whose values differ between two resolved
    configs (a workdir's ``config.json`` and ``c.to_dict()``), leaving out what a resumed run
    may change: ``eval.*``, :data:`RESUMABLE_TRAIN_KEYS` and the saved ``config_hash``."""
    a, b = _flat(_as_json(saved)), _flat(_as_json(resolved))
    skip = {"config_hash", *(f"train.{k}" for k in RESUMABLE_TRAIN_KEYS)}
    return sorted(k for k in set(a) | set(b)
                  if k not in skip and not k.startswith("eval.") and a.get(k) != b.get(k))


def _as_json(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
