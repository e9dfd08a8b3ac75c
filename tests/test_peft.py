"""PEFT LoRA folders: round trip, and real parity with ``peft.PeftModel`` on tiny random models.

The parity tests export a random non-zero adapter with ``export_peft``, load it with PEFT into
the transformers model our params came from, and compare PEFT's logits (adapter active, then
merged) with ``lm_forward`` on ``lora.fold``-ed params: this pins our a/b layout (including the
q/k/v/o head axes) and the ``alpha / r`` scale to PEFT's. The head test loads the same folder
into a model whose ``lm_head`` is the authors' ``ModuleList`` of ``CostWiseHead``s.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax.core import lora
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.lora import Adapter, LoraConfig
from mrr_jax.weights import peft as mpeft

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

SIZES = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
START = 2  # exits at layers 2..3 -> 2 heads
LENGTHS = [11, 7, 4]


def _cfg(**over) -> ModelConfig:
    kw = dict(family="llama", vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=3,
              num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6, rope_theta=1e4)
    return ModelConfig(**{**kw, **over})


def _base(cfg: ModelConfig) -> dict:
    """Zero base weights of the right shapes (enough for init_lora)."""
    d, f, n, k, h, L = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                        cfg.num_kv_heads, cfg.head_dim, cfg.num_layers)
    shapes = {"q": (d, n, h), "k": (d, k, h), "v": (d, k, h), "o": (n, h, d),
              "gate": (d, f), "up": (d, f), "down": (f, d)}
    return {"layers": {t: jnp.zeros((L, *s)) for t, s in shapes.items()}}


def _random_adapter(base: dict, heads: jax.Array, lcfg: LoraConfig, seed: int = 0) -> dict:
    """init_lora with ``b`` made random, so the adapter changes the model."""
    tree = lora.init_lora(jax.random.key(seed), base, heads, lcfg)
    rng = np.random.default_rng(seed)

    def fill(entry):
        return {"a": np.asarray(entry["a"]),
                "b": (0.3 * rng.standard_normal(entry["b"].shape)).astype(np.float32)}

    out = {"layers": {t: fill(e) for t, e in tree["layers"].items()}}
    if "heads" in tree:
        out["heads"] = fill(tree["heads"])
    return out


def _assert_same_tree(got: dict, want: dict) -> None:
    flat_g = jax.tree_util.tree_flatten_with_path(got)[0]
    flat_w = jax.tree_util.tree_flatten_with_path(want)[0]
    assert [p for p, _ in flat_g] == [p for p, _ in flat_w]
    for (p, g), (_, w) in zip(flat_g, flat_w):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=str(p))


@pytest.mark.parametrize("targets", [lora.TARGETS, ("q", "o", "down"), ("heads",)])
def test_round_trip(tmp_path, targets):
    cfg = _cfg()
    lcfg = LoraConfig(rank=4, alpha=12.0, dropout=0.05, targets=targets)
    heads = jnp.zeros((cfg.num_layers - START + 1, cfg.hidden_size))
    tree = _random_adapter(_base(cfg), heads, lcfg)
    mpeft.export_peft(tmp_path, tree, lcfg, cfg, START, base_model_name_or_path="tiny")
    conf = json.loads((tmp_path / mpeft.CONFIG_NAME).read_text())
    assert conf["peft_type"] == "LORA" and conf["task_type"] == "CAUSAL_LM"
    assert conf["r"] == 4 and conf["lora_alpha"] == 12 and conf["bias"] == "none"
    assert ("linear_head" in conf["target_modules"]) == ("heads" in targets)
    loaded, got_cfg = mpeft.load_peft(tmp_path, cfg, START)
    assert got_cfg == lcfg
    _assert_same_tree(loaded, tree)
    # And PEFT's own config parser accepts the file.
    pc = peft.PeftConfig.from_pretrained(str(tmp_path))
    assert pc.r == 4 and pc.lora_alpha == 12 and not pc.use_dora


def _random_hf(cls, extra, seed=0):
    torch.manual_seed(seed)
    hf_cfg = cls(**SIZES, **extra)
    hf_cfg._attn_implementation = "eager"
    model = getattr(transformers, cls.__name__.replace("Config", "ForCausalLM"))(hf_cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name
                    else 0.15 * torch.randn_like(p))
    return model


def _batch(vocab, seed=1):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(LENGTHS), max(LENGTHS)), np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = rng.integers(3, vocab, n)
        mask[b, :n] = 1
    return ids, mask


def _peft_load(model, folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = peft.PeftModel.from_pretrained(model, str(folder))
    bad = [str(w.message) for w in caught
           if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    assert not bad, bad
    # Every exported tensor landed in the model, unchanged (PEFT drops unexpected keys silently).
    import safetensors.numpy

    saved = safetensors.numpy.load_file(str(folder / mpeft.WEIGHTS_NAME))
    state = peft.get_peft_model_state_dict(pm)
    assert sorted(state) == sorted(saved)
    for k, v in saved.items():
        np.testing.assert_array_equal(state[k].detach().numpy(), v, err_msg=k)
    return pm.eval()


CASES = {
    "llama": (lambda: transformers.LlamaConfig, dict(tie_word_embeddings=False)),
    "qwen2": (lambda: transformers.Qwen2Config, dict(tie_word_embeddings=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_peft(case, tmp_path):
    from mrr_jax.core.decoder import lm_forward
    from mrr_jax.weights.hf import load_hf_dir

    cls, extra = CASES[case]
    model = _random_hf(cls(), extra)
    model.save_pretrained(tmp_path / "base")
    cfg, params = load_hf_dir(tmp_path / "base")
    assert cfg.family == case
    params = jax.tree.map(jnp.asarray, params)
    heads = jnp.zeros((cfg.num_layers - START + 1, cfg.hidden_size))
    lcfg = LoraConfig(rank=4, alpha=8.0, dropout=0.1, targets=lora.LAYER_TARGETS)
    tree = _random_adapter(params, heads, lcfg, seed=3)
    mpeft.export_peft(tmp_path / "adapter", tree, lcfg, cfg, START)

    ids, mask = _batch(SIZES["vocab_size"])
    real = mask.astype(bool)
    t_ids, t_mask = torch.tensor(ids), torch.tensor(mask)
    with torch.no_grad():
        base_logits = model(input_ids=t_ids, attention_mask=t_mask).logits.numpy()
    pm = _peft_load(model, tmp_path / "adapter")
    with torch.no_grad():
        active = pm(input_ids=t_ids, attention_mask=t_mask).logits.numpy()
        merged_model = pm.merge_and_unload()
        merged = merged_model(input_ids=t_ids, attention_mask=t_mask).logits.numpy()

    folded, _ = lora.fold(params, heads, [Adapter.of(tree, lcfg)])
    ours, _ = jax.jit(lm_forward, static_argnames="cfg")(
        folded, jnp.asarray(ids), jnp.asarray(mask), cfg=cfg)
    ours = np.asarray(ours)
    assert np.abs(active[real] - base_logits[real]).max() > 0.05  # the adapter matters
    np.testing.assert_allclose(ours[real], active[real], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[real], merged[real], atol=1e-4, rtol=0)


class CostWiseHead(torch.nn.Module):
    """The authors' exit head (FlagEmbedding Matroyshka_reranker ``mistral_model.py``)."""

    def __init__(self, d):
        super().__init__()
        self.linear_head = torch.nn.Linear(d, 1, bias=False)


def test_heads_load_into_costwise_lm_head(tmp_path):
    """Head entries land on ``lm_head.{e}.linear_head`` of the authors' head ModuleList with
    PEFT's scale, alongside the layer targets."""
    model = _random_hf(transformers.LlamaConfig, dict(tie_word_embeddings=False))
    model.save_pretrained(tmp_path / "base")
    from mrr_jax.weights.hf import load_hf_dir

    cfg, params = load_hf_dir(tmp_path / "base")
    n_exits = cfg.num_layers - START + 1
    heads = np.random.default_rng(5).standard_normal((n_exits, cfg.hidden_size)).astype(
        np.float32)
    model.lm_head = torch.nn.ModuleList([CostWiseHead(cfg.hidden_size) for _ in range(n_exits)])
    with torch.no_grad():
        for e in range(n_exits):
            model.lm_head[e].linear_head.weight.copy_(torch.from_numpy(heads[e][None]))
    lcfg = LoraConfig(rank=4, alpha=8.0, dropout=0.0)
    tree = _random_adapter(jax.tree.map(jnp.asarray, params), jnp.asarray(heads), lcfg, seed=7)
    mpeft.export_peft(tmp_path / "adapter", tree, lcfg, cfg, START)

    pm = _peft_load(model, tmp_path / "adapter")
    folded_params, folded_heads = lora.fold(params, jnp.asarray(heads), [Adapter.of(tree, lcfg)])
    x = torch.randn(5, cfg.hidden_size)
    with torch.no_grad():
        active = [pm.base_model.model.lm_head[e].linear_head(x)[:, 0].numpy()
                  for e in range(n_exits)]
        merged = pm.merge_and_unload()
    for e in range(n_exits):
        np.testing.assert_allclose(active[e], x.numpy() @ np.asarray(folded_heads[e]),
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose(merged.lm_head[e].linear_head.weight.detach().numpy()[0],
                                   np.asarray(folded_heads[e]), atol=1e-6, rtol=0)
    # A layer weight too: q of layer 1 in HF layout [N*H, D].
    q_hf = merged.model.layers[1].self_attn.q_proj.weight.detach().numpy()
    want = np.asarray(folded_params["layers"]["q"][1]).reshape(cfg.hidden_size, -1).T
    np.testing.assert_allclose(q_hf, want, atol=1e-6, rtol=0)


def test_shape_mismatch_names_the_tensor(tmp_path):
    cfg = _cfg()
    lcfg = LoraConfig(rank=4, alpha=8.0, targets=("q", "gate"))
    tree = _random_adapter(_base(cfg), jnp.zeros((2, 32)), lcfg)
    mpeft.export_peft(tmp_path, tree, lcfg, cfg, START)
    other = _cfg(intermediate_size=40)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.lora_B\.weight'.*"
                                         r"shape \(48, 4\), expected \(40, 4\)"):
        mpeft.load_peft(tmp_path, other, START)
    with pytest.raises(ValueError, match=r"layer 2, but the model has 2 layers"):
        mpeft.load_peft(tmp_path, _cfg(num_layers=2), START)


def test_refuses_bin_unknown_keys_and_unsupported_settings(tmp_path):
    cfg = _cfg()
    lcfg = LoraConfig(rank=2, alpha=4.0, targets=("v", "heads"))
    tree = _random_adapter(_base(cfg), jnp.zeros((2, 32)), lcfg)
    good = tmp_path / "good"
    mpeft.export_peft(good, tree, lcfg, cfg, START)
    conf = json.loads((good / mpeft.CONFIG_NAME).read_text())

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / mpeft.CONFIG_NAME).write_text(json.dumps(conf))
    (pickled / "adapter_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="refusing to load pickled"):
        mpeft.load_peft(pickled, cfg, START)

    with pytest.raises(ValueError, match="start_layer 2, loading with start_layer 1"):
        mpeft.load_peft(good, cfg, 1)

    dora = tmp_path / "dora"
    dora.mkdir()
    (dora / mpeft.CONFIG_NAME).write_text(json.dumps({**conf, "use_dora": True}))
    (dora / mpeft.WEIGHTS_NAME).write_bytes((good / mpeft.WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match="use_dora"):
        mpeft.load_peft(dora, cfg, START)

    import safetensors.numpy

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / mpeft.CONFIG_NAME).write_text(json.dumps(conf))
    tensors = safetensors.numpy.load_file(str(good / mpeft.WEIGHTS_NAME))
    tensors["base_model.model.model.embed_tokens.weight"] = np.zeros((64, 32), np.float32)
    (extra / mpeft.WEIGHTS_NAME).write_bytes(safetensors.numpy.save(tensors))
    with pytest.raises(ValueError, match="embed_tokens"):
        mpeft.load_peft(extra, cfg, START)

    # Heads of a model with more exits (start_layer 1: heads 0..2), without our metadata (as
    # from PyTorch), loaded with exits 2..3: head 2 does not exist.
    tree3 = _random_adapter(_base(cfg), jnp.zeros((3, 32)), lcfg)
    three = tmp_path / "three"
    mpeft.export_peft(three, tree3, lcfg, cfg, 1)
    tensors = safetensors.numpy.load_file(str(three / mpeft.WEIGHTS_NAME))
    (three / mpeft.WEIGHTS_NAME).write_bytes(safetensors.numpy.save(tensors))
    with pytest.raises(ValueError, match=r"lm_head\.2\.linear_head.*exit head 2.*has 2 "):
        mpeft.load_peft(three, cfg, START)


def test_reads_bfloat16_and_missing_layers_are_zero(tmp_path):
    """A PEFT-style file in bfloat16 covering only some layers (as ``layers_to_transform``)."""
    import safetensors.torch

    cfg = _cfg()
    r = 2
    a = torch.randn(r, 32, dtype=torch.bfloat16)
    b = torch.randn(4 * 8, r, dtype=torch.bfloat16)
    key = "base_model.model.model.layers.1.self_attn.q_proj"
    safetensors.torch.save_file({f"{key}.lora_A.weight": a, f"{key}.lora_B.weight": b},
                                str(tmp_path / mpeft.WEIGHTS_NAME))
    (tmp_path / mpeft.CONFIG_NAME).write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 4, "use_rslora": True,
         "target_modules": ["q_proj"], "layers_to_transform": [1]}))
    tree, lcfg = mpeft.load_peft(tmp_path, cfg, START)
    assert lcfg.targets == ("q",) and lcfg.scale == pytest.approx(4 / np.sqrt(r))
    q = tree["layers"]["q"]
    assert q["a"].shape == (3, 32, r) and q["b"].shape == (3, r, 4, 8)
    np.testing.assert_array_equal(q["a"][1], a.float().numpy().T)
    np.testing.assert_array_equal(q["b"][1], b.float().numpy().T.reshape(r, 4, 8))
    assert not q["a"][[0, 2]].any() and not q["b"][[0, 2]].any()
