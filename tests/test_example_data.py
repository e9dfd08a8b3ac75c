"""The embedded example dataset (stdlib docstrings): structure, consistency, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrr_jax.data import beir, check_ids, flag, trec
from mrr_jax.data.example import SPLITS, build, harvest, main, split_docstring, split_of
from mrr_jax.evaluation.evaluate import evaluate_run

REPO = Path(__file__).resolve().parents[1]
CAP = 300  # passages: small, to keep the test fast
FILES = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv",
         "bm25/train.trec", "bm25/dev.trec", "bm25/test.trec", "train.jsonl", "dev.jsonl",
         "train_bm25.jsonl", "stats.json"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("example") / "data"
    stats = build(out, max_docs=CAP)
    return out, stats


def test_split_docstring() -> None:
    assert split_docstring("Summary line.\n\n  Rest of\n  it.") == ("Summary line.", "Rest of it.")
    assert split_docstring("Summary.\nRest here.") == ("Summary.", "Rest here.")
    assert split_docstring("No full stop\nrest") is None
    assert split_docstring("Only one line.") is None


def test_files_and_counts(built: tuple[Path, dict]) -> None:
    out, stats = built
    for name in FILES:
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp"))
    corpus = beir.load_corpus(out / "corpus.jsonl")
    queries = beir.load_queries(out / "queries.jsonl")
    assert len(corpus) == stats["docs"] == CAP
    assert len(queries) == sum(stats["queries"].values()) == CAP
    assert stats["queries"]["train"] > stats["queries"]["dev"] > 0
    assert stats["queries"]["test"] > 0
    assert all(len(d.text.split()) <= 200 for d in corpus.values())
    assert json.loads((out / "stats.json").read_text()) == stats


def test_splits_share_no_module_and_qrels_resolve(built: tuple[Path, dict]) -> None:
    out, _ = built
    corpus = beir.load_corpus(out / "corpus.jsonl")
    queries = beir.load_queries(out / "queries.jsonl")
    module_of = {e.qualname: e.module for e in harvest()}
    modules: dict[str, set[str]] = {}
    seen_qids: set[str] = set()
    for split in SPLITS:
        _, split_queries, qrels = beir.load_split(out, split)
        assert qrels and set(split_queries) == set(qrels)
        assert not seen_qids & set(qrels)  # a query is in one split only
        seen_qids |= set(qrels)
        for qid, docs in qrels.items():
            assert qid in queries
            assert list(docs.values()) == [1]
            assert all(d in corpus for d in docs)
            assert qid == f"q:{next(iter(docs))}"  # the query's own passage is relevant
        modules[split] = {module_of[d] for docs in qrels.values() for d in docs}
        assert all(split_of(m) == split for m in modules[split])
    assert not modules["train"] & modules["dev"]
    assert not modules["train"] & modules["test"]
    assert not modules["dev"] & modules["test"]
    assert seen_qids == set(queries)


def test_bm25_runs(built: tuple[Path, dict]) -> None:
    out, stats = built
    corpus = beir.load_corpus(out / "corpus.jsonl")
    for split in SPLITS:
        run = trec.load_run(out / "bm25" / f"{split}.trec")
        qrels = beir.load_qrels(out / "qrels" / f"{split}.tsv")
        assert set(run) <= set(qrels) and len(run) >= 0.9 * len(qrels)
        assert check_ids(out / "bm25" / f"{split}.trec", corpus, qrels).ok
        assert all(0 < len(docs) <= 100 for docs in run.values())
        assert all(s > 0 for docs in run.values() for s in docs.values())
        metrics = evaluate_run(run, qrels, ["RR@10", "nDCG@10", "R@100"])
        assert {m: round(v, 4) for m, v in metrics.items()} == stats["bm25"][split]
        assert 0.2 < metrics["nDCG@10"] < 1.0 and metrics["R@100"] > 0.6


def test_flag_jsonl(built: tuple[Path, dict]) -> None:
    out, stats = built
    queries = beir.load_queries(out / "queries.jsonl")
    for split in ("train", "dev"):
        rows = flag.load_flag(out / f"{split}.jsonl")
        assert len(rows) == stats["flag_rows"][split] >= 0.9 * stats["queries"][split]
        for r in rows:
            assert r.query.strip() and r.pos and r.neg and len(r.neg) <= 15
            assert all(p.strip() for p in r.pos + r.neg)
            assert not set(r.pos) & set(r.neg)
            assert r.pos_scores is None and r.neg_scores is None
        assert {r.query for r in rows} <= set(queries.values())
        keys = {tuple(json.loads(line)) for line in (out / f"{split}.jsonl").open()}
        assert keys == {("query", "pos", "neg")}


def test_train_bm25_has_the_bm25_scores_as_teacher(built: tuple[Path, dict]) -> None:
    """``train_bm25.jsonl`` is ``train.jsonl`` plus teacher scores, and those are the BM25
    scores of the run file wherever the run has the passage (the top 100), lower elsewhere."""
    out, _ = built
    plain = flag.load_flag(out / "train.jsonl")
    taught = flag.load_flag(out / "train_bm25.jsonl")
    assert [(r.query, r.pos, r.neg) for r in taught] == [(r.query, r.pos, r.neg) for r in plain]
    corpus = beir.load_corpus(out / "corpus.jsonl")
    queries = beir.load_queries(out / "queries.jsonl")
    docid = {d.passage: d.docid for d in corpus.values()}
    qid = {text: q for q, text in queries.items()}
    run = trec.load_run(out / "bm25" / "train.trec")
    hits = misses = 0
    for r in taught:
        assert len(r.pos_scores) == len(r.pos) and len(r.neg_scores) == len(r.neg)
        ranked = run[qid[r.query]]
        floor = min(ranked.values())
        for passage, score in zip(r.pos + r.neg, r.pos_scores + r.neg_scores):
            if docid[passage] in ranked:
                assert score == pytest.approx(ranked[docid[passage]], abs=1e-4)
                hits += 1
            else:  # a positive outside the top 100: its exact score, below the 100th
                assert 0 <= score <= floor + 1e-4
                misses += 1
    assert hits > 10 * misses
    # BM25 ranks the positive above its hard negatives more often than chance: a real teacher
    better = [r.pos_scores[0] > max(r.neg_scores[:3]) for r in taught]
    assert sum(better) / len(better) > 0.25


def test_deterministic_across_processes(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = built
    other = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "mrr_jax.data.example", str(other),
                           "--max-docs", str(CAP)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bm25 dev" in proc.stdout
    for name in FILES:
        assert (other / name).read_bytes() == (out / name).read_bytes(), name
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == \
        sorted(p.relative_to(out) for p in out.rglob("*"))


def test_cli_refuses_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main([str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--max-docs" in capsys.readouterr().out
