"""Plumbing of ``python -m mrr_jax.bench`` on a tiny random Llama (no timing is asserted).

The tiny model uses SmolLM2's tokenizer (copied beside it) so that the bench's text pairs
tokenize as on the real model; everything else is random and small.
"""

import json
import math
import shutil

import numpy as np
import pytest
import torch
import transformers

from mrr_jax import bench

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, smollm2_dir):
    """A 6-layer random Llama with SmolLM2's vocabulary and tokenizer, saved as an HF dir."""
    out = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (smollm2_dir / name).is_file():
            shutil.copy(smollm2_dir / name, out / name)
    return out


def test_text_pairs_are_deterministic_and_long_enough():
    a, b = bench.text_pairs(5, min_chars=500), bench.text_pairs(5, min_chars=500)
    assert a == b
    assert all(q.strip() and len(p) >= 500 for q, p in a)


def test_bench_main_writes_one_row_per_plan(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    plans = ["full", "compress=4:2 depth=5"]
    code = bench.main(["--model", str(tiny_model), "--plans", ";".join(plans), "--pairs", "8",
                       "--seq-len", "32", "--batch-size", "4", "--repeats", "1",
                       "--compile-batch", "2", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert [r["plan_arg"] for r in res["plans"]] == plans
    for row in res["plans"]:
        assert row["pairs_per_s"] > 0 and math.isfinite(row["predicted_speedup"])
        assert len(row["scores"]) == 8 and np.isfinite(row["scores"]).all()
        assert row["compile_s_cold"] is not None and row["compile_s_warm"] is not None
    assert res["plans"][1]["predicted_speedup"] > 1
    for attn in ("eager", "sdpa"):
        diff = res["torch"][attn]["max_abs_diff"]
        assert math.isfinite(diff) and diff < 1e-3, (attn, diff)
        assert res["torch"][attn]["pairs_per_s"] > 0
    assert res["env"]["seq_len"] == 32 and res["env"]["pairs"] == 8
    assert res["memory"]["after_jax_mib"] > 0
    table = capsys.readouterr().out
    assert table.count("\n| `") == len(plans) and "PyTorch eager" in table


def test_bad_plan_is_a_usage_error(tiny_model):
    with pytest.raises(SystemExit):
        bench.parse_args(["--model", str(tiny_model), "--plans", "depth=x"])
