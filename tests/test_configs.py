"""Every config in ``configs/`` loads with every stage it takes, and its values make sense for
the model it names: the trainer's ``step_spec`` / ``roles_of`` accept it for a stand-in with the
real model's layer count, the mesh splits the batch and the model axis, the eval plans fit.

No model is loaded and nothing is compiled: fast."""

import math
import types
from pathlib import Path

import pytest

from mrr_jax.core.config import ModelConfig
from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.scoring_job.job import JobConfig, parse_plan
from mrr_jax.training.config import STAGES, check_config, check_plans, roles_of
from mrr_jax.training.dev_eval import eval_plan
from mrr_jax.training.step import step_spec
from mrr_jax.weights.adapters import AdapterRole

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCORING = {"score_stdlib"}  # scoring-job configs (mrr_jax.scoring_job.job), not training ones

# The real backbones' shapes (family, L, D, F, N, K, H, V).
REAL = {
    "mistral_7b": ("mistral", 32, 4096, 14336, 32, 8, 128, 32000),
    "llama3_8b": ("llama", 32, 4096, 14336, 32, 8, 128, 128256),
    "qwen2_7b": ("qwen2", 28, 3584, 18944, 28, 4, 128, 152064),
    "gemma2_9b": ("gemma2", 42, 3584, 14336, 16, 8, 256, 256000),
    "smollm2_135m": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
    "smollm2_135m_long": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
    "smollm2_135m_demo": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
    "smollm2_135m_best": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
    "smollm2_135m_broad": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
    "smollm2_135m_gpu": ("llama", 30, 576, 1536, 9, 3, 64, 49152),
}
BIG = ("mistral_7b", "llama3_8b", "qwen2_7b", "gemma2_9b")
STAGE_ARGS = {name: (*STAGES, "horizontal2", "horizontal4", "horizontal8") for name in BIG}
CHIPS = 16  # the slice the big configs are written for (v5e-16 / v4-32)


def _training_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in SCORING)


def test_every_config_is_known_here():
    assert set(_training_configs()) == {*REAL, "tiny"}
    assert {p.stem for p in CONFIGS.glob("*.py")} == {*REAL, "tiny", *SCORING}


def _stand_in(name: str, c) -> types.SimpleNamespace:
    """A Reranker-like object: ``cfg`` with the real model's shapes, ``start_layer``."""
    if name == "tiny":
        r = c.model.random
        shape = ("llama", r.num_layers, r.hidden_size, r.intermediate_size, r.num_heads,
                 r.num_kv_heads, r.head_dim, 49152)
    else:
        shape = REAL[name]
    family, layers, d, f, n, k, h, v = shape
    cfg = ModelConfig(family=family, vocab_size=v, hidden_size=d, intermediate_size=f,
                      num_layers=layers, num_heads=n, num_kv_heads=k, head_dim=h,
                      rms_norm_eps=1e-6, rope_theta=10000.0)
    return types.SimpleNamespace(cfg=cfg, start_layer=c.model.start_layer)


CASES = [(name, arg) for name in _training_configs()
         for arg in STAGE_ARGS.get(name, STAGES)]


@pytest.mark.parametrize("name,arg", CASES, ids=[f"{n}:{a}" for n, a in CASES])
def test_config_loads_and_the_trainer_accepts_it(name, arg):
    c = load_config(f"{CONFIGS / name}.py:{arg}")
    check_config(c)  # every value in range, every eval plan read by Plan.parse
    stage = "horizontal" if arg.startswith("horizontal") else arg
    assert c.stage == stage
    rr = _stand_in(name, c)
    L = rr.cfg.num_layers
    check_plans(c.eval.plans, L)  # as the trainer checks them once the model is loaded
    spec = step_spec(c, rr)
    roles = roles_of(c)
    names = [str(r) for r in roles]  # the folders under <workdir>/adapters/
    assert all(1 <= x < L for x in spec.candidates)
    assert spec.anchors[-1] == L and all(a <= L for a in spec.anchors)
    assert spec.exits == tuple(range(c.model.start_layer, L + 1))
    assert spec.lora_scale == c.lora.alpha / c.lora.rank
    for p in c.eval.plans:  # as the trainer's evaluate reads them
        eval_plan(p, L)
    if stage == "stage1":
        assert roles == [AdapterRole("stage1")] and dict(spec.weights)["self"] > 0
        assert c.model.init_adapters == ()
    else:  # stage 2: CE only
        assert dict(spec.weights) == {"ce": 1.0, "teacher": 0.0, "self": 0.0}
        assert not spec.distill
    if stage == "vertical":
        assert names == ["vertical"] and spec.ratios == (1,)
    if stage == "horizontal":
        assert names == [f"h{r}" for r in c.compress.ratios] and 1 not in c.compress.ratios
        assert roles == [AdapterRole("horizontal", r) for r in c.compress.ratios]
    if stage == "joint":
        assert names[0] == "vertical" and spec.ratios[0] == 1 and len(roles) > 1
    if arg.startswith("horizontal") and arg[-1].isdigit():
        assert c.compress.ratios == (int(arg.removeprefix("horizontal")),)
    if name in BIG:
        _check_big(name, c, rr, spec)


def _check_big(name, c, rr, spec):
    """The paper's recipe (docs/method.md §7), scaled to nothing, on a 16-chip slice."""
    L = rr.cfg.num_layers
    assert c.data.queries_per_step * c.data.accum == 128
    assert c.data.group_size == 16
    assert (c.data.query_max_len, c.data.passage_max_len) == (32, 192)
    assert (c.lora.rank, c.lora.alpha, c.lora.dropout) == (32, 64.0, 0.1)
    assert set(c.lora.targets) == {"q", "k", "v", "o", "gate", "up", "down", "heads"}
    assert (c.optim.warmup_ratio, c.optim.clip, c.optim.weight_decay) == (0.1, 1.0, 0.0)
    assert (c.train.steps, c.train.epochs, c.train.remat) == (0, 1, True)
    assert c.model.dtype == "bfloat16" and c.model.start_layer == 4
    assert c.model.yes_token == "Yes" and c.seed == 42
    assert spec.candidates == tuple(range(4, L, 4))
    assert spec.anchors == tuple(sorted({*range(8, L, 8), L}))
    assert (spec.compress_prob, spec.mode) == (0.5, "merge")
    if c.stage == "stage1":
        assert c.optim.lr == 2e-4 and c.train.save_every == 100
        assert spec.ratios == (1, 2, 4, 8)
        assert dict(spec.weights) == {"ce": 1.0, "teacher": 1.0, "self": 1.0}
    else:
        assert c.optim.lr == 2e-5 and c.train.save_every == 500
        assert len(c.model.init_adapters) == 1  # the stage-1 adapter (a placeholder to set)
    # Mesh: the model axis D is fsdp-sharded (a 7-9B bfloat16 base, 14-19 GB, does not fit a
    # 16 GB chip), and a micro-batch's rows split over data x fsdp on 16 chips.
    m = c.mesh
    assert m.data == -1 and m.tensor == 1 and m.fsdp >= 8
    assert rr.cfg.hidden_size % m.fsdp == 0 and CHIPS % (m.fsdp * m.tensor) == 0
    data = CHIPS // (m.fsdp * m.tensor)
    assert (c.data.queries_per_step * c.data.group_size) % (data * m.fsdp) == 0
    params = _num_params(rr.cfg)
    # The trainer stores the frozen base in model.dtype (bfloat16): 2 bytes a parameter, ~2 GB
    # a chip at most (the docstrings' figures), well under 16 GB.
    assert 2 * params / m.fsdp < 2.5e9


def _num_params(cfg: ModelConfig) -> int:
    d, f, n, k, h, v = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                        cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size)
    per_layer = d * h * (2 * n + 2 * k) + 3 * d * f
    return cfg.num_layers * per_layer + 2 * v * d


def test_mistral_is_the_reference_recipe():
    c = load_config(f"{CONFIGS}/mistral_7b.py")  # no ARG: stage 1
    assert c.stage == "stage1" and c.model.path.endswith("Mistral-7B-v0.1")
    assert (c.data.queries_per_step, c.data.accum) == (32, 4)
    assert c.compress.layers == (4, 8, 12, 16, 20, 24, 28) and c.loss.anchor_every == 8
    assert c.compress.ratios == (1, 2, 4, 8)
    assert math.isclose(_num_params(_stand_in("mistral_7b", c).cfg), 7.24e9, rel_tol=0.01)


def test_overrides_and_bad_args():
    c = load_config(f"{CONFIGS}/llama3_8b.py:horizontal4", [
        "model.path=/models/llama3", "data.train=/d/a.jsonl,/d/b.jsonl", "mesh.fsdp=16",
        "model.init_adapters=('/w/adapters/stage1',)"])
    assert (c.model.path, c.mesh.fsdp, c.compress.ratios) == ("/models/llama3", 16, (4,))
    assert c.model.init_adapters == ("/w/adapters/stage1",)
    for name in BIG:
        with pytest.raises(ConfigError, match=f"{name}.py:stage2: .*expected stage1, vertical"):
            load_config(f"{CONFIGS}/{name}.py:stage2")
        with pytest.raises(ConfigError, match="ratio >= 2"):
            load_config(f"{CONFIGS}/{name}.py:horizontal1")


@pytest.mark.parametrize("split", ["dev", "test", "train"])
def test_scoring_config_is_a_valid_job(split):
    job = JobConfig.from_dict(load_config(f"{CONFIGS}/score_stdlib.py:{split}").to_dict())
    assert job.run.endswith(f"{split}.trec") and job.top_k >= 1
    for p in job.plan:
        parse_plan(p).resolve(REAL["smollm2_135m"][1])
