"""LoRA adapters in Hugging Face PEFT's folder format (export for PyTorch, import from it).

A PEFT LoRA folder holds ``adapter_config.json`` and ``adapter_model.safetensors``. Every
adapted ``nn.Linear`` (weight ``[out, in]``) contributes two tensors::

    base_model.model.<module path>.lora_A.weight   [r, in]
    base_model.model.<module path>.lora_B.weight   [out, r]

with ``W_eff = W + (lora_alpha / r) * B @ A``, the scale ``mrr_jax.core.lora`` uses. Our adapter
tree (``mrr_jax.core.lora``) keeps ``a`` [*in, r] and ``b`` [r, *out] in the base's einsum layout,
so ``A = a.reshape(in, r).T`` and ``B = b.reshape(r, out).T`` (the head axes of q/k/v/o flatten
to HF's ``heads * head_dim`` in HF's own rotate-half order, as ``keymaps`` does for the base).

Module paths: decoder layers are ``model.layers.{i}.self_attn.{q,k,v,o}_proj`` and
``model.layers.{i}.mlp.{gate,up,down}_proj`` (every supported family). Exit head ``e`` (the
head of layer ``start_layer + e``) is ``lm_head.{e}.linear_head``: in the authors' code
(FlagEmbedding ``research/Matroyshka_reranker``, ``inference/mistral_model.py`` and
``finetune/self_distillation/load_model.py``) ``CostWiseMistralForCausalLM.lm_head`` is an
``nn.ModuleList`` of ``CostWiseHead`` (one per layer ``start_layer..L``, ``layer_sep`` 1), each
wrapping ``linear_head = nn.Linear(hidden, 1, bias=False)``, and LoRA's ``target_modules``
include ``linear_head``. An exported folder therefore loads with
``PeftModel.from_pretrained(costwise_model, folder)`` into the authors' model, and into a
plain ``*ForCausalLM`` when it has no head entries.

``adapter_config.json`` gets only long-standing ``LoraConfig`` fields (no ``peft_version``,
``use_dora`` ...) so that older PEFT releases, such as the authors' environment, accept it.
Our own checks (start layer, family) go into the safetensors metadata, which PEFT ignores.

Loading reads safetensors only (``.bin`` pickles are refused: unpickling runs code) and decodes
float32/float16/bfloat16 without torch. It accepts any subset of targets, layers and heads
(absent ones get a zero delta), and refuses what our tree cannot express (DoRA, per-module
ranks or alphas, trained biases, ``modules_to_save``) and every shape that does not fit the
model, naming the tensor.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from mrr_jax.core.config import ModelConfig
from mrr_jax.core.lora import TARGETS, LoraConfig
from mrr_jax.data.fileio import atomic_write_bytes
from mrr_jax.weights.hf import SafetensorsFile

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
# Our target -> HF module path under ``model.layers.{i}.`` (the same for every family).
LAYER_MODULES = {
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
    "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}
HEAD_MODULE = "linear_head"
HEAD_PATH = "lm_head.{e}." + HEAD_MODULE

_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\."
                        r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")
_HEAD_KEY = re.compile(r"^lm_head\.(\d+)\.linear_head\.lora_([AB])\.weight$")
_MODULE_TO_TARGET = {v: k for k, v in LAYER_MODULES.items()}
# The safetensors dtypes a LoRA weight may have (read and widened to float32).
_ST_FLOATS = ("F32", "F16", "F64", "BF16")


def _io_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per target: (input axes, output axes) of one layer's (or one head's) weight, ours."""
    d, f, n, k, h = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                     cfg.head_dim)
    return {"q": ((d,), (n, h)), "k": ((d,), (k, h)), "v": ((d,), (k, h)), "o": ((n, h), (d,)),
            "gate": ((d,), (f,)), "up": ((d,), (f,)), "down": ((f,), (d,)), "heads": ((d,), ())}


def _num_exits(cfg: ModelConfig, start_layer: int) -> int:
    if not 1 <= start_layer <= cfg.num_layers:
        raise ValueError(f"start_layer {start_layer} outside 1..{cfg.num_layers}")
    return cfg.num_layers - start_layer + 1


def _module_path(target: str, index: int) -> str:
    """HF module path (without the PEFT prefix) of layer ``index``'s target or exit head."""
    if target == "heads":
        return HEAD_PATH.format(e=index)
    return f"model.layers.{index}.{LAYER_MODULES[target]}"


def _check_tree(params: dict, lora_cfg: LoraConfig, cfg: ModelConfig, n_exits: int
                ) -> dict[str, dict[str, np.ndarray]]:
    """{target: {a, b}} (float32) of an adapter tree, every shape checked against the model."""
    entries = dict(params.get("layers", {}))
    if "heads" in params:
        entries["heads"] = params["heads"]
    unknown = sorted(set(entries) - set(TARGETS)) + sorted(set(params) - {"layers", "heads"})
    if unknown:
        raise ValueError(f"adapter tree has unknown entries {unknown}; known targets: {TARGETS}")
    if not entries:
        raise ValueError("adapter tree is empty: nothing to export")
    io = _io_shapes(cfg)
    r = lora_cfg.rank
    out: dict[str, dict[str, np.ndarray]] = {}
    for t in TARGETS:
        if t not in entries:
            continue
        if t not in lora_cfg.targets:
            raise ValueError(f"adapter tree has target {t!r}, which LoraConfig.targets "
                             f"{lora_cfg.targets} excludes")
        lead = n_exits if t == "heads" else cfg.num_layers
        a, b = (np.asarray(entries[t][x], np.float32) for x in ("a", "b"))
        want_a, want_b = (lead, *io[t][0], r), (lead, r, *io[t][1])
        for name, got, want in (("a", a, want_a), ("b", b, want_b)):
            if got.shape != want:
                raise ValueError(f"adapter {t}/{name} has shape {got.shape}, expected {want} "
                                 f"for this model (rank {r})")
        out[t] = {"a": a, "b": b}
    return out


def peft_config(lora_cfg: LoraConfig, targets: list[str], base_model_name_or_path: str = ""
                ) -> dict[str, Any]:
    """The ``adapter_config.json`` dict for an adapter over ``targets`` (our names)."""
    alpha = lora_cfg.alpha
    modules = [HEAD_MODULE if t == "heads" else LAYER_MODULES[t].split(".")[-1] for t in targets]
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path or None, "revision": None,
        "inference_mode": True, "r": lora_cfg.rank, "target_modules": modules,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "lora_dropout": lora_cfg.dropout, "fan_in_fan_out": False, "bias": "none",
        "modules_to_save": None, "init_lora_weights": True, "layers_to_transform": None,
        "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }


def export_peft(out_dir: str | Path, params: dict, lora_cfg: LoraConfig, model_cfg: ModelConfig,
                start_layer: int, base_model_name_or_path: str = "") -> Path:
    """Writes the adapter tree ``params`` (layout of ``mrr_jax.core.lora``) as a PEFT LoRA folder
    (float32 weights) and returns the folder. Head entry ``e`` goes to ``lm_head.{e}.linear_head``
    (the authors' exit heads; see the module docstring)."""
    n_exits = _num_exits(model_cfg, start_layer)
    entries = _check_tree(params, lora_cfg, model_cfg, n_exits)
    tensors: dict[str, np.ndarray] = {}
    for t, e in entries.items():
        a, b = e["a"], e["b"]
        r = a.shape[-1]
        for i in range(a.shape[0]):
            path = PREFIX + _module_path(t, i)
            tensors[f"{path}.lora_A.weight"] = np.ascontiguousarray(a[i].reshape(-1, r).T)
            tensors[f"{path}.lora_B.weight"] = np.ascontiguousarray(b[i].reshape(r, -1).T)
    meta = {"format": "pt", "mrr_jax.start_layer": str(start_layer),
            "mrr_jax.family": model_cfg.family}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / WEIGHTS_NAME, safetensors.numpy.save(tensors, metadata=meta))
    conf = peft_config(lora_cfg, list(entries), base_model_name_or_path)
    atomic_write_bytes(out / CONFIG_NAME, (json.dumps(conf, indent=2) + "\n").encode())
    return out


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> float32 array, metadata) of a safetensors file; float16/bfloat16 are widened
    (numpy has no bfloat16: the file is decoded by :class:`mrr_jax.weights.hf.SafetensorsFile`
    rather than by ``safetensors.numpy``)."""
    st = SafetensorsFile(path)
    out: dict[str, np.ndarray] = {}
    for name, dt in st.dtypes.items():
        if dt not in _ST_FLOATS:
            raise ValueError(f"{st.path}: tensor {name!r} has dtype {dt}; LoRA weights must be "
                             f"floating point ({', '.join(_ST_FLOATS)})")
        out[name] = st.get(name).astype(np.float32)
    return out, st.metadata


def _weights_file(path: Path) -> Path:
    f = path / WEIGHTS_NAME
    if f.is_file():
        return f
    pickles = sorted(p.name for p in path.glob("*.bin"))
    if pickles:
        raise ValueError(
            f"{path}: refusing to load pickled adapter weights {pickles} (unpickling can run "
            "arbitrary code). Convert once, e.g. `safetensors.torch.save_file(torch.load(f, "
            f"weights_only=True), '{WEIGHTS_NAME}')`, then load again.")
    raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME}")


def _lora_settings(conf: dict[str, Any], source: str) -> tuple[int, float, float]:
    """(rank, alpha as our scale expects, dropout) from a PEFT config, refusing what the
    single-rank ``a @ b`` tree cannot represent."""
    if conf.get("peft_type") != "LORA":
        raise ValueError(f"{source}: peft_type {conf.get('peft_type')!r}, only LORA is supported")
    problems = []
    if conf.get("use_dora"):
        problems.append("use_dora=true (DoRA magnitude vectors)")
    if conf.get("rank_pattern") or conf.get("alpha_pattern"):
        problems.append("per-module rank_pattern/alpha_pattern")
    if conf.get("bias", "none") != "none" or conf.get("lora_bias"):
        problems.append(f"trained biases (bias={conf.get('bias')!r}, "
                        f"lora_bias={conf.get('lora_bias')!r})")
    if conf.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out=true (Conv1D layout)")
    if conf.get("modules_to_save"):
        problems.append(f"modules_to_save={conf['modules_to_save']!r} (full module copies)")
    if problems:
        raise ValueError(f"{source}: unsupported LoRA settings: {'; '.join(problems)}")
    r = conf.get("r")
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"{source}: LoRA rank r={r!r} is not a positive integer")
    alpha = float(conf.get("lora_alpha", 8))
    if conf.get("use_rslora"):  # scale alpha / sqrt(r) == (alpha * sqrt(r)) / r
        alpha *= math.sqrt(r)
    return r, alpha, float(conf.get("lora_dropout") or 0.0)


def load_peft(in_dir: str | Path, model_cfg: ModelConfig, start_layer: int
              ) -> tuple[dict, LoraConfig]:
    """(adapter tree of float32 numpy arrays, LoraConfig) of a PEFT LoRA folder, checked
    against ``model_cfg`` with exits ``start_layer..L``.

    The tree has the targets found in the file; layers or heads of a present target that the
    file lacks get zeros (no change). For inference wrap it as ``Adapter(tree, cfg.scale)``
    (no dropout)."""
    path = Path(in_dir)
    conf_file = path / CONFIG_NAME
    if not conf_file.is_file():
        raise FileNotFoundError(f"{path}: not a PEFT adapter folder (no {CONFIG_NAME})")
    conf = json.loads(conf_file.read_text())
    r, alpha, dropout = _lora_settings(conf, str(conf_file))
    weights = _weights_file(path)
    tensors, meta = read_safetensors(weights)
    src = str(weights)
    has_heads = any(f".{HEAD_MODULE}." in name for name in tensors)
    exported_start = meta.get("mrr_jax.start_layer")
    if has_heads and exported_start is not None and int(exported_start) != start_layer:
        raise ValueError(f"{src}: exit heads exported with start_layer {exported_start}, "
                         f"loading with start_layer {start_layer}")
    n_exits = _num_exits(model_cfg, start_layer)
    io = _io_shapes(model_cfg)
    found: dict[str, dict[tuple[int, str], np.ndarray]] = {}
    unknown = []
    for name, w in tensors.items():
        key = name.removeprefix(PREFIX)
        if (m := _LAYER_KEY.match(key)) and name.startswith(PREFIX):
            index, target, ab = int(m.group(1)), _MODULE_TO_TARGET[m.group(2)], m.group(3)
            if index >= model_cfg.num_layers:
                raise ValueError(f"{src}: tensor {name!r} is for layer {index}, but the model "
                                 f"has {model_cfg.num_layers} layers")
        elif (m := _HEAD_KEY.match(key)) and name.startswith(PREFIX):
            index, target, ab = int(m.group(1)), "heads", m.group(2)
            if index >= n_exits:
                raise ValueError(f"{src}: tensor {name!r} is for exit head {index}, but the "
                                 f"model has {n_exits} (layers {start_layer}.."
                                 f"{model_cfg.num_layers})")
        else:
            unknown.append(name)
            continue
        n_in, n_out = (math.prod(s) for s in io[target])
        want = (r, n_in) if ab == "A" else (n_out, r)
        if w.shape != want:
            raise ValueError(f"{src}: tensor {name!r} has shape {tuple(w.shape)}, expected "
                             f"{want} for this model (r={r}, {model_cfg.family}, hidden "
                             f"{model_cfg.hidden_size}, heads {model_cfg.num_heads}/"
                             f"{model_cfg.num_kv_heads}x{model_cfg.head_dim}, mlp "
                             f"{model_cfg.intermediate_size})")
        found.setdefault(target, {})[(index, ab)] = w
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ValueError(f"{src}: tensors no LoRA target of ours matches: {unknown[:5]}{more}; "
                         f"expected {PREFIX}model.layers.{{i}}.<q/k/v/o/gate/up/down proj> or "
                         f"{PREFIX}{HEAD_PATH}, each .lora_A.weight/.lora_B.weight")
    if not found:
        raise ValueError(f"{src}: no LoRA weights in the file")
    tree: dict = {"layers": {}}
    for t in TARGETS:
        if t not in found:
            continue
        lead = n_exits if t == "heads" else model_cfg.num_layers
        in_shape, out_shape = io[t]
        a = np.zeros((lead, *in_shape, r), np.float32)
        b = np.zeros((lead, r, *out_shape), np.float32)
        for i in range(lead):
            wa, wb = found[t].get((i, "A")), found[t].get((i, "B"))
            if (wa is None) != (wb is None):
                have, miss = ("lora_A", "lora_B") if wb is None else ("lora_B", "lora_A")
                raise ValueError(f"{src}: {PREFIX}{_module_path(t, i)} has {have} but no {miss}")
            if wa is not None:
                a[i] = wa.T.reshape(*in_shape, r)
                b[i] = wb.T.reshape(r, *out_shape)
        if t == "heads":
            tree["heads"] = {"a": a, "b": b}
        else:
            tree["layers"][t] = {"a": a, "b": b}
    targets = tuple(t for t in TARGETS if t in found)
    return tree, LoraConfig(rank=r, alpha=alpha, dropout=dropout, targets=targets)
