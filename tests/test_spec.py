"""The parameter spec (``mrr_jax.core.spec``) agrees with everything built from it.

Proves, for every family (tiny random transformers checkpoints, as in test_parity_families):
the tree ``weights.hf`` loads has exactly the spec's keys and shapes and uses every tensor of
the checkpoint; the decoder layer module declares exactly one layer's slice; the random init
has the same tree. Also: LoRA factor shapes match the spec and the HF modules' in/out
features; sharding specs on an 8-device mesh follow the rule table (and replicate an axis
that does not divide); the HF reshapes round-trip.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mrr_jax.core import spec
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.decoder import DecoderLayer, attention_masks, rope_tables
from mrr_jax.core.lora import TARGETS, LoraConfig, init_lora
from mrr_jax.runtime import sharding
from mrr_jax.weights import keymaps
from mrr_jax.weights.hf import load_hf_dir
from tests.test_parity_families import CASES, _random_model


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(np.shape(a)), tree)


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request, tmp_path_factory):
    """(case, torch model, cfg, params) of a saved and reloaded tiny checkpoint."""
    cls, extra = CASES[request.param]
    model = _random_model(cls, extra)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg, params = load_hf_dir(path)
    # An HF tensor the spec does not map would be ignored with a warning.
    assert not [w for w in caught if "ignored" in str(w.message)]
    return request.param, model, cfg, params


def test_loaded_tree_is_the_spec(loaded):
    _, model, cfg, params = loaded
    assert _shapes(params) == spec.param_shapes(cfg)
    names = set(spec.param_shapes(cfg)["layers"])
    assert {"q", "k", "v", "o", "gate", "up", "down", "attn_norm", "mlp_norm"} <= names
    assert ("q_bias" in names) == cfg.attention_bias and ("o_bias" in names) == cfg.o_bias
    assert ("down_bias" in names) == cfg.mlp_bias
    assert ("post_mlp_norm" in names) == (cfg.family == "gemma2")
    assert ("lm_head" in params) == (not cfg.tie_word_embeddings)
    # Every HF tensor maps to a spec weight (none ignored, none missing).
    hf_names = {n for n, _ in model.named_parameters()}
    ours = {f"model.layers.{i}.{s}" for s in keymaps.layer_map(cfg)
            for i in range(cfg.num_layers)} | set(keymaps.GLOBAL_KEYS)
    assert hf_names <= ours
    assert ours - hf_names <= {"lm_head.weight"}


def test_decoder_layer_declares_one_layer_slice_and_random_init_matches(loaded):
    _, _, cfg, params = loaded
    b, t = 2, 5
    x = jnp.zeros((b, t, cfg.hidden_size))
    pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    cos, sin = rope_tables(pos, cfg)
    mask, _ = attention_masks(pos, jnp.ones((b, t), bool), cfg)
    declared = jax.eval_shape(lambda: DecoderLayer(cfg).init(jax.random.key(0), x, cos, sin,
                                                             mask))
    assert set(declared) == {"params"}
    one_layer = jax.tree.map(lambda a: a.shape[1:], params["layers"])
    assert _shapes(declared["params"]) == one_layer
    rand = spec.random_params(cfg, seed=0)
    assert _shapes(rand) == _shapes(params)
    if cfg.norm_plus_one:  # Gemma's norms scale by 1 + w: the identity is w = 0
        assert not rand["layers"]["attn_norm"].any()
    else:
        assert (rand["layers"]["attn_norm"] == 1).all()


def test_lora_shapes_follow_the_spec_and_the_hf_modules(loaded):
    _, model, cfg, params = loaded
    heads = np.zeros((3, cfg.hidden_size), np.float32)
    tree = init_lora(jax.random.key(0), params, heads, LoraConfig(rank=4))
    layer0 = model.model.layers[0]
    modules = {"q": layer0.self_attn.q_proj, "k": layer0.self_attn.k_proj,
               "v": layer0.self_attn.v_proj, "o": layer0.self_attn.o_proj,
               "gate": layer0.mlp.gate_proj, "up": layer0.mlp.up_proj,
               "down": layer0.mlp.down_proj}
    for name in TARGETS:
        entry = tree["heads"] if name == "heads" else tree["layers"][name]
        base = heads if name == "heads" else params["layers"][name]
        want_a, want_b = spec.lora_shapes(name, base.shape, 4)
        assert (entry["a"].shape, entry["b"].shape) == (want_a, want_b), name
        if name != "heads":
            ins, outs = spec.io_shapes(name, cfg)
            assert (math.prod(ins), math.prod(outs)) == (modules[name].in_features,
                                                          modules[name].out_features), name


def test_hf_reshapes_round_trip(loaded):
    _, model, cfg, params = loaded
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for suffix, (ours, n_in) in keymaps.layer_map(cfg).items():
        w = params["layers"][ours][1]
        assert keymaps.hf_shape(n_in, w.shape) == state[f"model.layers.1.{suffix}"].shape
        np.testing.assert_array_equal(keymaps.from_ours(n_in, w),
                                      state[f"model.layers.1.{suffix}"])


def _specs(tree, mesh):
    return jax.tree.map(lambda s: s.spec, sharding.tree_shardings(tree, mesh))


def test_sharding_specs_on_eight_devices():
    cfg = ModelConfig(family="llama", vocab_size=96, hidden_size=64, intermediate_size=96,
                      num_layers=3, num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-6,
                      rope_theta=1e4, attention_bias=True, o_bias=True, mlp_bias=True)
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32),
                          spec.param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    heads = jax.ShapeDtypeStruct((2, 64), jnp.float32)
    mesh = sharding.make_mesh(2, 2, 2)
    got = _specs(params, mesh)
    layers = got["layers"]
    assert layers["q"] == P(None, "fsdp", "tensor", None)
    assert layers["k"] == layers["v"] == P(None, "fsdp", "tensor", None)
    assert layers["o"] == P(None, "tensor", None, "fsdp")
    assert layers["gate"] == layers["up"] == P(None, "fsdp", "tensor")
    assert layers["down"] == P(None, "tensor", "fsdp")
    assert layers["q_bias"] == P(None, "tensor", None)
    assert layers["o_bias"] == layers["down_bias"] == P(None, "fsdp")
    assert layers["gate_bias"] == P(None, "tensor")
    assert layers["attn_norm"] == layers["mlp_norm"] == P(None, None)
    assert got["embed"] == got["lm_head"] == P(None, "fsdp")
    assert got["final_norm"] == P(None)
    assert _specs({"heads": heads}, mesh)["heads"] == P(None, "fsdp")

    lora = jax.eval_shape(lambda: init_lora(jax.random.key(0), params, heads,
                                            LoraConfig(rank=4)))
    # Adam-like optimizer state nests the same tree: it shards the same way.
    state = {"trainable": {"stage1": lora}, "opt_state": ({"mu": {"stage1": lora}}, {})}
    got = _specs(state, mesh)
    for tree in (got["trainable"]["stage1"], got["opt_state"][0]["mu"]["stage1"]):
        assert tree["layers"]["q"]["a"] == P(None, "fsdp", None)
        assert tree["layers"]["q"]["b"] == P(None, None, "tensor", None)
        assert tree["layers"]["o"]["a"] == P(None, "tensor", None, None)
        assert tree["layers"]["o"]["b"] == P(None, None, "fsdp")
        assert tree["layers"]["down"]["a"] == P(None, "tensor", None)
        assert tree["heads"]["a"] == P(None, "fsdp", None)
        assert tree["heads"]["b"] == P(None, None)

    # An axis that does not divide its mesh axis stays replicated: K = 2 over tensor = 4.
    mesh4 = sharding.make_mesh(1, 2, 4)
    layers = _specs(params, mesh4)["layers"]
    assert layers["q"] == P(None, "fsdp", "tensor", None)
    assert layers["k"] == P(None, "fsdp", None, None)


def test_logical_axes_of_unknown_or_misshaped_arrays_are_replicated():
    assert spec.logical_axes(("count",), 0) == ()
    assert spec.logical_axes(("opt_state", "mu", "x"), 2) == (None, None)
    assert spec.logical_axes(("layers", "q"), 3) == (None, None, None)  # missing L axis
    assert spec.logical_axes(("q",), 4) == (None,) * 4  # a layer weight outside layers/
    assert spec.logical_axes(("layers", "q"), 4) == ("layers", "embed", "heads", "head_dim")
