"""Plan-grid mode (``mrr_jax.grid``) on a tiny random Llama and a small example dataset."""

import json
import shutil

import pytest

from mrr_jax import Reranker, grid
from mrr_jax.data import trec
from mrr_jax.data.example import build

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PLANS = ["full", "depth=5", "depth=4 compress=2:2"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, smollm2_dir):
    """A 6-layer random Llama with SmolLM2's vocabulary and tokenizer, saved as an HF dir."""
    import torch
    import transformers

    out = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(smollm2_dir / name, out / name)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    build(out, max_docs=200)
    return out


def test_plan_grid_rows_and_files(tiny_model, data, tmp_path):
    rr = Reranker.from_pretrained(tiny_model)
    rows = grid.plan_grid(rr, data, "dev", data / "bm25" / "dev.trec", PLANS, top_k=5,
                          out=tmp_path, batch_size=10, max_length=40, query_max_length=8)
    assert [r["plan"] for r in rows] == [*PLANS, "BM25"]
    assert rows[-1]["baseline"] and rows[-1]["flops"] == 0
    flops = [r["flops"] for r in rows]
    assert flops[0] > flops[1] > flops[2] > flops[3] == 0
    assert rows[0]["flops_rel"] == pytest.approx(1.0)
    for r in rows:
        assert set(r["metrics"]) == {"nDCG@10", "RR@10", "R@5"}
        assert r["metrics"]["R@5"] == pytest.approx(rows[-1]["metrics"]["R@5"])  # same pool
    for r in rows[:-1]:
        assert r["seconds"] > 0 and r["compile_seconds"] >= 0 and r["pairs"] > 0
    doc = json.loads((tmp_path / "grid.json").read_text())
    assert [r["plan"] for r in doc["rows"]] == [*PLANS, "BM25"]
    md = (tmp_path / "grid.md").read_text().splitlines()
    assert len(md) == 2 + len(rows) and "BM25 (baseline)" in md[-1]
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the baseline row is the first-stage run cut to top-k, on the same queries
    from mrr_jax.evaluate import evaluate_run, load_qrels_any

    qrels = load_qrels_any(data / "qrels" / "dev.tsv")
    first = trec.top_k(trec.load_run(data / "bm25" / "dev.trec"), 5)
    expect = evaluate_run(first, qrels, ["nDCG@10", "RR@10", "R@5"])
    assert rows[-1]["metrics"] == pytest.approx(expect)


def test_max_queries_and_cli_errors(tiny_model, data, tmp_path, capsys):
    code = grid.main(["--model", str(tiny_model), "--data", str(data), "--first-stage",
                      str(data / "bm25" / "dev.trec"), "--top-k", "3", "--plans",
                      "depth=4", "--max-queries", "4", "--max-length", "40",
                      "--query-max-length", "8", "--batch-size", "10", "--no-progress",
                      "--out", str(tmp_path)])
    assert code == 0
    rows = json.loads((tmp_path / "grid.json").read_text())["rows"]
    assert [r["queries"] for r in rows] == [4, 4] and rows[0]["pairs"] <= 12
    assert "depth=4" in capsys.readouterr().out
    assert grid.main(["--model", str(tiny_model), "--data", str(data), "--first-stage",
                      str(data / "bm25" / "dev.trec"), "--plans", "depth=x"]) == 2
    err = capsys.readouterr().err
    assert "depth must be an integer" in err and "Traceback" not in err
