"""Plan-grid mode (``mrr_jax.evaluation.grid``) on a tiny random Llama and small example data."""

import json

import pytest

from mrr_jax import Reranker
from mrr_jax.data import trec
from mrr_jax.evaluation import grid

PLANS = ["full", "depth=5", "depth=4 compress=2:2"]


@pytest.fixture(scope="module")
def data(example_data):
    return example_data


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
    from mrr_jax.evaluation.evaluate import evaluate_run, load_qrels_any

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


def test_shared_passes_give_the_same_rows_as_one_pass_per_plan(tiny_model, data):
    """Plans with one compression schedule share a pass (exits at each depth); every row's
    per-query values are those of the plan run alone."""
    rr = Reranker.from_pretrained(tiny_model)
    plans = ["full", "depth=4", "depth=5 compress=2:2", "depth=6 compress=2:2", "compress=3:2"]
    resolved = [rr.resolve_plan(p) for p in plans]
    assert grid.shared_passes(resolved) == [[0, 1], [2, 3], [4]]
    kw = dict(top_k=5, batch_size=10, max_length=40, query_max_length=8)
    alone = grid.plan_grid(rr, data, "dev", data / "bm25" / "dev.trec", plans, **kw)
    shared = grid.plan_grid(rr, data, "dev", data / "bm25" / "dev.trec", plans,
                            share_passes=True, **kw)
    for a, b in zip(alone[:-1], shared[:-1]):
        assert a["plan"] == b["plan"] and a["flops"] == b["flops"]
        assert b["per_query"] == a["per_query"]
        assert b["score_stats"]["mean"] == pytest.approx(a["score_stats"]["mean"], abs=1e-5)
    assert shared[1]["shared_pass"] == ["full", "depth=4"] and "shared_pass" not in alone[1]
    assert shared[0]["seconds"] == shared[1]["seconds"]  # one pass, one time
