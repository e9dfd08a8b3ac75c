"""Evaluation: metrics against hand computations, qrels detection, CLI, plan-grid table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mrr_jax.data import DataError, beir, trec
from mrr_jax.evaluation.evaluate import (
    canonical_metric,
    evaluate_per_query,
    evaluate_run,
    grid_table,
    load_qrels_any,
    main,
)

QRELS = {
    "q1": {"d1": 1, "d2": 1, "d3": 0},
    "q2": {"d5": 1},
    "q3": {"d9": 2, "d8": 1},
    "q4": {"d1": 0},  # no relevant document: not evaluated
}
RUN = {
    "q1": {"d3": 3.0, "d1": 2.0, "dX": 1.0, "d2": 0.5},  # relevant at ranks 2 and 4
    "q2": {"d4": 1.0, "d6": 0.9},  # nothing relevant retrieved
    "q3": {"d9": 2.0, "d8": 2.0, "d7": 1.0},  # tie: docid ascending puts d8 (rel 1) first
    "q5": {"d1": 1.0},  # not in the qrels: ignored
}
METRICS = ["RR@10", "nDCG@10", "R@100", "AP"]


def log2(x: float) -> float:
    return math.log(x, 2)


def hand() -> dict[str, dict[str, float]]:
    """The toy run's metrics, computed by hand (trec_eval's nDCG: gain = relevance)."""
    q1 = {"RR@10": 1 / 2,
          "nDCG@10": (1 / log2(3) + 1 / log2(5)) / (1 / log2(2) + 1 / log2(3)),
          "R@100": 2 / 2,
          "AP": (1 / 2 + 2 / 4) / 2}
    q2 = {"RR@10": 0.0, "nDCG@10": 0.0, "R@100": 0.0, "AP": 0.0}
    q3 = {"RR@10": 1.0,
          "nDCG@10": (1 / log2(2) + 2 / log2(3)) / (2 / log2(2) + 1 / log2(3)),
          "R@100": 1.0,
          "AP": (1 / 1 + 2 / 2) / 2}
    return {"q1": q1, "q2": q2, "q3": q3}


def test_per_query_matches_hand() -> None:
    got = evaluate_per_query(RUN, QRELS, METRICS)
    want = hand()
    assert list(got) == ["q1", "q2", "q3"]
    for q in want:
        for m in METRICS:
            assert got[q][m] == pytest.approx(want[q][m], abs=1e-9), (q, m)


def test_mean_matches_hand() -> None:
    got = evaluate_run(RUN, QRELS, METRICS)
    want = hand()
    for m in METRICS:
        assert got[m] == pytest.approx(sum(want[q][m] for q in want) / 3, abs=1e-9), m


def test_query_missing_from_run_scores_zero() -> None:
    qrels = {**QRELS, "q6": {"d1": 1}}
    got = evaluate_per_query(RUN, qrels, ["RR@10"])
    assert got["q6"] == {"RR@10": 0.0}
    assert evaluate_run(RUN, qrels, ["RR@10"])["RR@10"] == pytest.approx((0.5 + 1.0) / 4)


def test_aliases_and_names_as_given() -> None:
    assert canonical_metric("MRR@10") == "RR@10"
    assert canonical_metric("Recall@100") == "R@100"
    assert canonical_metric("NDCG@10") == "nDCG@10"
    assert canonical_metric("MAP") == "AP"
    got = evaluate_run(RUN, QRELS, ["MRR@10", "RR@10", "Recall@100"])
    assert list(got) == ["MRR@10", "RR@10", "Recall@100"]
    assert got["MRR@10"] == got["RR@10"] == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_run(RUN, QRELS, ["NoSuchMetric@3"])
    with pytest.raises(ValueError, match="no query with a relevant document"):
        evaluate_run(RUN, {"q4": {"d1": 0}}, ["RR@10"])


def test_qrels_autodetect(tmp_path: Path) -> None:
    beir.write_qrels(tmp_path / "beir.tsv", QRELS)
    trec.write_qrels(tmp_path / "trec.txt", QRELS)
    assert load_qrels_any(tmp_path / "beir.tsv") == QRELS
    assert load_qrels_any(tmp_path / "trec.txt") == QRELS
    (tmp_path / "headerless.tsv").write_text("q1\td1\t1\n")
    assert load_qrels_any(tmp_path / "headerless.tsv") == {"q1": {"d1": 1}}
    (tmp_path / "bad.txt").write_text("\nq1 d1\n")
    with pytest.raises(DataError, match=r"line 2, field 'columns'"):
        load_qrels_any(tmp_path / "bad.txt")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trec.write_run(tmp_path / "run.trec", RUN)
    beir.write_qrels(tmp_path / "qrels.tsv", QRELS)
    out = tmp_path / "res.json"
    assert main(["--run", str(tmp_path / "run.trec"), "--qrels", str(tmp_path / "qrels.tsv"),
                 "--metrics", "MRR@10", "nDCG@10", "--out", str(out), "--per-query"]) == 0
    printed = capsys.readouterr().out
    assert "MRR@10" in printed and "0.5000" in printed and "q3" in printed
    res = json.loads(out.read_text())
    r = res["runs"][str(tmp_path / "run.trec")]
    assert r["num_queries"] == 3 and r["queries_in_run"] == 3
    assert r["mean"]["MRR@10"] == pytest.approx(0.5, abs=1e-9)
    assert r["per_query"]["q3"]["nDCG@10"] == pytest.approx(hand()["q3"]["nDCG@10"], abs=1e-9)
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 one 1.0 t\n")
    assert main(["--run", str(tmp_path / "bad.trec"), "--qrels",
                 str(tmp_path / "qrels.tsv")]) == 2
    assert "line 1, field 'rank'" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--metrics" in capsys.readouterr().out


def test_evaluate_command_dispatches_grid(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mrr_jax.evaluate grid ...`` is the plan grid; anything else the metrics."""
    from mrr_jax.evaluation import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["grid", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "python -m mrr_jax.grid" in out and "--first-stage" in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--metrics" in capsys.readouterr().out


def test_metrics_live_in_the_data_layer() -> None:
    """The metric functions are ``mrr_jax.data.metrics``'s, re-exported here unchanged."""
    from mrr_jax.data import metrics

    assert evaluate_run is metrics.evaluate_run and canonical_metric is metrics.canonical_metric
    assert evaluate_per_query is metrics.evaluate_per_query
    with pytest.raises(ValueError, match="unknown metric 'Foo@10'"):
        metrics.evaluate_run(RUN, QRELS, ["Foo@10"])
    with pytest.raises(ValueError, match="unknown metric 'RR@x'"):
        metrics.evaluate_run(RUN, QRELS, ["RR@x"])


ROWS = [
    {"plan": "BM25", "metrics": {"nDCG@10": 0.40, "RR@10": 0.35}, "flops": 0.0, "seconds": 0.1},
    {"plan": "depth=30", "metrics": {"nDCG@10": 0.62, "RR@10": 0.55}, "flops": 8.1e12,
     "seconds": 12.0},
    {"plan": "depth=20 compress=8:2 mode=merge", "metrics": {"nDCG@10": 0.58, "RR@10": 0.51},
     "flops": 3.9e12, "seconds": 6.5},
    {"plan": "depth=10", "metrics": {"nDCG@10": 0.50, "RR@10": 0.44}, "flops": 2.7e12,
     "seconds": 4.0},
]


def test_grid_table(tmp_path: Path) -> None:
    paths = grid_table(ROWS, tmp_path / "grid")
    assert set(paths) == {"json", "md", "png"}
    assert all(p.is_file() and p.parent == tmp_path / "grid" for p in paths.values())
    doc = json.loads(paths["json"].read_text())
    assert doc["metric"] == "nDCG@10" and doc["cost"] == "flops"
    assert [r["plan"] for r in doc["rows"]] == [r["plan"] for r in ROWS]
    assert [r["baseline"] for r in doc["rows"]] == [True, False, False, False]
    assert doc["rows"][1]["metrics"] == ROWS[1]["metrics"]
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| plan | nDCG@10 | RR@10 | GFLOPs | seconds |"
    assert len(md) == 2 + len(ROWS)
    assert md[2] == "| BM25 (baseline) | 0.4000 | 0.3500 | 0 | 0.100 |"
    assert md[4] == "| depth=20 compress=8:2 mode=merge | 0.5800 | 0.5100 | 3900 | 6.500 |"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "grid").glob("*.tmp"))


def test_grid_table_options_and_errors(tmp_path: Path) -> None:
    paths = grid_table(ROWS, tmp_path, metric="RR@10", cost="seconds")
    assert json.loads(paths["json"].read_text())["metric"] == "RR@10"
    with pytest.raises(ValueError, match="row 1"):
        grid_table([ROWS[0], {"plan": "x"}], tmp_path)
    with pytest.raises(ValueError, match="is in no row"):
        grid_table(ROWS, tmp_path, metric="AP")
