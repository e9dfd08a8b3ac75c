"""Bad input gets a clear error that names the problem (file, tensor, field)."""

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from mrr_jax import Plan, Reranker
from mrr_jax.core.config import ModelConfig
from mrr_jax.weights.hf import load_hf_dir

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


@pytest.fixture
def tiny_dir(tmp_path):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY))
    model.save_pretrained(tmp_path)
    return tmp_path


def test_unsupported_architecture(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    cfg.update(model_type="mamba", architectures=["MambaForCausalLM"])
    (tiny_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unsupported architecture.*mamba.*llama, mistral"):
        load_hf_dir(tiny_dir)


def test_unsupported_rope_type():
    with pytest.raises(ValueError, match="unsupported RoPE type 'yarn'"):
        ModelConfig.from_hf({**TINY, "model_type": "llama",
                             "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})


def test_missing_tensor_is_named(tiny_dir):
    f = tiny_dir / "model.safetensors"
    tensors = load_file(f)
    del tensors["model.layers.3.mlp.up_proj.weight"]
    save_file(tensors, f)
    with pytest.raises(KeyError, match=r"missing tensor.*model\.layers\.3\.mlp\.up_proj\.weight"):
        load_hf_dir(tiny_dir)


def test_misshaped_tensor_is_named(tiny_dir):
    f = tiny_dir / "model.safetensors"
    tensors = load_file(f)
    tensors["model.layers.2.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)
    save_file(tensors, f)
    with pytest.raises(ValueError, match=r"model\.layers\.2\.self_attn\.k_proj\.weight.*"
                                         r"shape \(8, 32\), expected \(16, 32\)"):
        load_hf_dir(tiny_dir)


def test_pickled_bin_is_refused(tiny_dir):
    torch.save(load_file(tiny_dir / "model.safetensors"), tiny_dir / "pytorch_model.bin")
    (tiny_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"refusing to load pickled weights.*pytorch_model\.bin"):
        load_hf_dir(tiny_dir)


def test_missing_weights_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "llama"}))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_hf_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model"):
        Reranker.from_pretrained(tmp_path / "nope")


def test_missing_tokenizer(tiny_dir):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json.*score_tokens"):
        Reranker.from_pretrained(tiny_dir)
    # With an explicit head row the model loads, scores token ids, and refuses text clearly.
    rr = Reranker.from_pretrained(tiny_dir, yes_token_id=5)
    assert rr.score_tokens([[1, 9, 4, 7, 8, 2, 3]], [2], [2]).shape == (1, 1)
    with pytest.raises(ValueError, match="has no tokenizer"):
        rr.compute_score([("q", "p")])


def test_bad_plans_and_exits(tiny_dir):
    rr = Reranker.from_pretrained(tiny_dir, yes_token_id=5)
    ids, q, p = [[1, 9, 4, 7, 8, 2, 3]], [2], [2]
    with pytest.raises(ValueError, match="depth 7 is beyond the model's 6 layers"):
        rr.score_tokens(ids, q, p, plan=Plan(depth=7))
    with pytest.raises(ValueError, match="at or past depth 4"):
        rr.score_tokens(ids, q, p, plan="depth=4 compress=4:2")
    with pytest.raises(ValueError, match=r"exits \[3\] must be .* within 4\.\.5"):
        rr.score_tokens(ids, q, p, plan="depth=5", exits=[3])
    with pytest.raises(ValueError, match="do not fit a sequence of 7 tokens"):
        rr.score_tokens(ids, [6], [2])
    with pytest.raises(ValueError, match="compat must be one of"):
        Reranker.from_pretrained(tiny_dir, yes_token_id=5, compat="authors")


def test_plan_text_errors():
    for bad, msg in [("depth=x", "depth must be an integer"),
                     ("compress=8", "not LAYER:RATIO"),
                     ("compress=8:0", "ratio must be an integer >= 1"),
                     ("compress=0:2", "layer must be an integer >= 1"),
                     ("depth=4 depth=5", "given twice"),
                     ("mode=zip", "mode must be one of"),
                     ("width=3", "cannot read 'width=3'")]:
        with pytest.raises(ValueError, match=msg):
            Plan.parse(bad)


def test_empty_texts_are_named(smollm2_dir):
    rr = Reranker.from_pretrained(smollm2_dir)
    with pytest.raises(ValueError, match="pair 1: passage is empty"):
        rr.compute_score([("q", "p"), ("q", "  ")])
    with pytest.raises(ValueError, match="pair 0: query is empty"):
        rr.compute_score([("", "p")])
