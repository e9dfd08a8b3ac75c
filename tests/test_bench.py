"""Plumbing of ``python -m mrr_jax.bench`` on a tiny random Llama (no timing is asserted).

The tiny model uses SmolLM2's tokenizer (copied beside it) so that the bench's text pairs
tokenize as on the real model; everything else is random and small.
"""

import json
import math

import numpy as np
import pytest

from mrr_jax.experiments import bench


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
