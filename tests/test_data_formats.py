"""Data formats: round trips (dict and streaming readers) and located errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mrr_jax.data import DataError, Doc, Skipped, beir, candidates, check_ids, flag, msmarco, trec
from mrr_jax.data.candidates import Candidate, CandidateQuery
from mrr_jax.data.flag import FlagRow

DOCS = [
    Doc("d1", "Caf\u00e9 text with \"quotes\" and \u00fcnicode.", "Title one"),
    Doc("d2", "second passage"),
    Doc("10", "multi\nline text", "t"),
]
QUERIES = {"q1": "what is caf\u00e9?", "2": "second query", "10": "tenth"}
QRELS = {"q1": {"d1": 1, "d2": 0}, "2": {"d2": 2}, "10": {"10": 1}}
RUN = {"q1": {"d1": 1.5, "d2": -0.25, "10": 1.5}, "2": {"d2": 3.0, "d1": 1e-12}}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                               for r in rows))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.jsonl.gz"])
def test_beir_corpus_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert beir.write_corpus(path, DOCS) == 3
    assert list(beir.iter_corpus(path)) == DOCS
    assert beir.load_corpus(path) == {d.docid: d for d in DOCS}
    assert not (tmp_path / (name + ".tmp")).exists()


def test_beir_queries_qrels_round_trip(tmp_path: Path) -> None:
    beir.write_queries(tmp_path / "queries.jsonl", QUERIES)
    assert list(beir.iter_queries(tmp_path / "queries.jsonl")) == list(QUERIES.items())
    assert beir.load_queries(tmp_path / "queries.jsonl") == QUERIES
    beir.write_qrels(tmp_path / "qrels" / "test.tsv", QRELS)
    text = (tmp_path / "qrels" / "test.tsv").read_text()
    assert text.splitlines()[0] == "query-id\tcorpus-id\tscore"
    assert beir.load_qrels(tmp_path / "qrels" / "test.tsv") == QRELS
    triples = sorted(beir.iter_qrels(tmp_path / "qrels" / "test.tsv"))
    assert triples == sorted((q, d, r) for q, ds in QRELS.items() for d, r in ds.items())
    beir.write_corpus(tmp_path / "corpus.jsonl", DOCS)
    corpus, queries, qrels = beir.load_split(tmp_path, "test")
    assert len(corpus) == 3 and queries == QUERIES and qrels == QRELS


def test_beir_qrels_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "q.tsv", "q1\td1\t1\nq1\td2\t0\n")
    assert beir.load_qrels(path) == {"q1": {"d1": 1, "d2": 0}}


def test_msmarco_round_trip(tmp_path: Path) -> None:
    msmarco.write_collection(tmp_path / "collection.tsv", DOCS)
    got = msmarco.load_collection(tmp_path / "collection.tsv")
    # the format has no title and no line breaks: the passage is title + text, one line
    assert got == {d.docid: Doc(d.docid, d.passage.replace("\n", " ")) for d in DOCS}
    assert [d.docid for d in msmarco.iter_collection(tmp_path / "collection.tsv")] == \
        ["d1", "d2", "10"]
    msmarco.write_queries(tmp_path / "queries.tsv", QUERIES)
    assert msmarco.load_queries(tmp_path / "queries.tsv") == QUERIES
    assert list(msmarco.iter_queries(tmp_path / "queries.tsv")) == list(QUERIES.items())
    msmarco.write_qrels(tmp_path / "qrels.tsv", QRELS)
    assert msmarco.load_qrels(tmp_path / "qrels.tsv") == QRELS
    assert (tmp_path / "qrels.tsv").read_text().splitlines()[0] == "2 0 d2 2"


def test_msmarco_reads_tab_separated_qrels(tmp_path: Path) -> None:
    path = write(tmp_path / "qrels.dev.tsv", "1102432\t0\t2026790\t1\n")
    assert msmarco.load_qrels(path) == {"1102432": {"2026790": 1}}


def test_trec_run_round_trip_order_and_ties(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    assert trec.write_run(path, RUN, tag="test") == 5
    lines = path.read_text().splitlines()
    # numeric qids first; score descending; tie (d1, 10 at 1.5) broken by docid ascending
    assert lines[:2] == ["2 Q0 d2 1 3.0 test", "2 Q0 d1 2 1e-12 test"]
    assert lines[2:] == ["q1 Q0 10 1 1.5 test", "q1 Q0 d1 2 1.5 test",
                         "q1 Q0 d2 3 -0.25 test"]
    assert trec.load_run(path) == RUN
    streamed = list(trec.iter_run(path))
    assert [(r.qid, r.docid, r.rank, r.score, r.tag, r.line) for r in streamed[:1]] == \
        [("2", "d2", 1, 3.0, "test", 1)]
    assert trec.write_run(path, RUN, k=1) == 2
    assert trec.load_run(path) == {"2": {"d2": 3.0}, "q1": {"10": 1.5}}


def test_trec_qrels_round_trip(tmp_path: Path) -> None:
    trec.write_qrels(tmp_path / "qrels.txt", QRELS)
    assert trec.load_qrels(tmp_path / "qrels.txt") == QRELS
    assert sorted(trec.iter_qrels(tmp_path / "qrels.txt")) == sorted(
        (q, d, r) for q, ds in QRELS.items() for d, r in ds.items())


def test_top_k_and_ranking() -> None:
    assert trec.ranking(RUN["q1"]) == [("10", 1.5), ("d1", 1.5), ("d2", -0.25)]
    top = trec.top_k(RUN, 2)
    assert top == {"q1": {"10": 1.5, "d1": 1.5}, "2": {"d2": 3.0, "d1": 1e-12}}
    assert list(top["q1"]) == ["10", "d1"]
    with pytest.raises(ValueError):
        trec.top_k(RUN, 0)


def test_candidates_round_trip(tmp_path: Path) -> None:
    items = [
        CandidateQuery("q1", "query one", [Candidate("d1", "text one", 2.5),
                                           Candidate("d2"), Candidate("d3", score=-1.0)]),
        CandidateQuery("q2", "query two", []),
    ]
    path = tmp_path / "cands.jsonl"
    assert candidates.write_candidates(path, items) == 2
    assert list(candidates.iter_candidates(path)) == items
    assert candidates.load_candidates(path) == {c.qid: c for c in items}
    first = json.loads(path.read_text().splitlines()[0])
    assert first["candidates"][1] == {"docid": "d2"}  # absent fields left out


def test_candidates_from_run() -> None:
    corpus = {d.docid: d for d in DOCS}
    got = list(candidates.from_run(RUN, QUERIES, corpus, k=2))
    assert [c.qid for c in got] == ["2", "q1"]
    assert got[1].candidates == [Candidate("10", DOCS[2].passage, 1.5),
                                 Candidate("d1", DOCS[0].passage, 1.5)]
    with pytest.raises(DataError, match="'x' of the run"):
        list(candidates.from_run({"q1": {"x": 1.0}}, QUERIES, corpus))


def test_flag_round_trip(tmp_path: Path) -> None:
    rows = [FlagRow("q", ["p"], ["n1", "n2"]),
            FlagRow("q2", ["p2"], [], pos_scores=[1.0], neg_scores=[], prompt="Yes?")]
    path = tmp_path / "train.jsonl"
    assert flag.write_flag(path, rows) == 2
    assert flag.load_flag(path) == rows
    assert json.loads(path.read_text().splitlines()[0]) == {"query": "q", "pos": ["p"],
                                                            "neg": ["n1", "n2"]}


def test_failed_write_keeps_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    beir.write_corpus(path, DOCS)
    before = path.read_bytes()
    with pytest.raises(DataError, match="duplicate id 'd1'"):
        beir.write_corpus(path, [DOCS[0], DOCS[1], DOCS[0]])
    assert path.read_bytes() == before
    assert not (tmp_path / "corpus.jsonl.tmp").exists()


# ----------------------------------------------------------------------------- errors


def located(exc: pytest.ExceptionInfo[DataError], path: Path, line: int | None,
            field: str | None) -> str:
    """Assert the error's attributes and that its message names file, line and field."""
    e = exc.value
    assert (e.path, e.line, e.field) == (str(path), line, field)
    msg = str(e)
    assert str(path) in msg
    if line is not None:
        assert f"line {line}" in msg
    if field is not None:
        assert f"field '{field}'" in msg
    return msg


@pytest.mark.parametrize(("rows", "line", "field", "what"), [
    (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": '], 2, None, "malformed JSON"),
    (['{"_id": "a", "text": "x"}', "", '["not", "an", "object"]'], 3, None, "JSON object"),
    (['{"_id": "a", "text": "x"}', '{"text": "y"}'], 2, "_id", "missing field"),
    (['{"_id": "a"}'], 1, "text", "missing field"),
    (['{"_id": "a", "text": 3}'], 1, "text", "expected a string"),
    (['{"_id": "a b", "text": "x"}'], 1, "_id", "whitespace"),
    (['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'], 2, "_id",
     "duplicate id 'a' (first at line 1)"),
    (['{"_id": "a", "text": "x"}', '{"_id": "b", "title": " ", "text": "  "}'], 2, "text",
     "empty document"),
])
def test_corpus_errors(tmp_path: Path, rows: list[str], line: int, field: str | None,
                       what: str) -> None:
    path = jsonl(tmp_path / "corpus.jsonl", rows)
    with pytest.raises(DataError) as exc:
        beir.load_corpus(path)
    assert what in located(exc, path, line, field)


def test_title_only_document_is_not_empty(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "title": "T", "text": ""}])
    assert beir.load_corpus(path)["a"].passage == "T"


def test_empty_documents_skipped_and_counted(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "a", "text": "x"}, {"_id": "b", "text": ""}, {"_id": "c", "text": " \t"},
        {"_id": "d", "text": "y"}])
    skipped = Skipped()
    with caplog.at_level(logging.WARNING, logger="mrr_jax.data"):
        docs = list(beir.iter_corpus(path, on_empty="skip", skipped=skipped))
    assert [d.docid for d in docs] == ["a", "d"]
    assert skipped.counts == {"empty document": 2} and skipped.total == 2
    assert skipped.examples[0] == f"{path}, line 2: empty document"
    assert "skipped 2 record(s)" in caplog.text and str(path) in caplog.text


def test_empty_queries(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "queries.jsonl", [{"_id": "1", "text": "q"}, {"_id": "2",
                                                                          "text": ""}])
    with pytest.raises(DataError) as exc:
        beir.load_queries(path)
    assert "empty query" in located(exc, path, 2, "text")
    skipped = Skipped()
    assert beir.load_queries(path, on_empty="skip", skipped=skipped) == {"1": "q"}
    assert skipped.counts == {"empty query": 1}
    with pytest.raises(ValueError, match="on_empty"):
        beir.load_queries(path, on_empty="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "line", "field", "what"), [
    ("query-id\tcorpus-id\tscore\nq1\td1\n", 2, "columns", "got 2"),
    ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, "score", "not an integer: 'high'"),
    ("q1\td1\t1\nq1\td1\t0\n", 2, "corpus-id", "duplicate judgement"),
    ("q1\t\t1\n", 1, "corpus-id", "empty id"),
])
def test_beir_qrels_errors(tmp_path: Path, text: str, line: int, field: str,
                           what: str) -> None:
    path = write(tmp_path / "test.tsv", text)
    with pytest.raises(DataError) as exc:
        beir.load_qrels(path)
    assert what in located(exc, path, line, field)


@pytest.mark.parametrize(("text", "line", "field", "what"), [
    ("1\tfine\n2\tone\ttoo many\n", 2, "columns", "expected 2 tab-separated columns"),
    ("1\tfine\n1\tagain\n", 2, "pid", "duplicate id '1' (first at line 1)"),
    ("1\tfine\n2\t \n", 2, "passage", "empty passage"),
    ("1\tfine\n\t2\n", 2, "pid", "empty id"),
])
def test_msmarco_collection_errors(tmp_path: Path, text: str, line: int, field: str,
                                   what: str) -> None:
    path = write(tmp_path / "collection.tsv", text)
    with pytest.raises(DataError) as exc:
        msmarco.load_collection(path)
    assert what in located(exc, path, line, field)


def test_msmarco_empty_passage_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "collection.tsv", "1\tfine\n2\t\n3\talso fine\n")
    skipped = Skipped()
    docs = msmarco.load_collection(path, on_empty="skip", skipped=skipped)
    assert list(docs) == ["1", "3"] and skipped.counts == {"empty passage": 1}


def test_msmarco_query_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "queries.tsv", "1\tok\n2\n")
    with pytest.raises(DataError) as exc:
        msmarco.load_queries(path)
    assert "got 1" in located(exc, path, 2, "columns")


@pytest.mark.parametrize(("text", "line", "field", "what"), [
    ("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0\n", 2, "columns", "expected 6 columns"),
    ("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 two 1.0 t\n", 2, "rank", "not an integer: 'two'"),
    ("q1 Q0 d1 1 2.0 t\n\nq1 Q0 d2 2 abc t\n", 3, "score", "not a number: 'abc'"),
    ("q1 Q0 d1 1 nan t\n", 1, "score", "not a finite number"),
    ("q1 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n", 2, "docid", "duplicate (qid, docid)"),
])
def test_trec_run_errors(tmp_path: Path, text: str, line: int, field: str, what: str) -> None:
    path = write(tmp_path / "run.trec", text)
    with pytest.raises(DataError) as exc:
        trec.load_run(path)
    assert what in located(exc, path, line, field)


@pytest.mark.parametrize(("text", "line", "field", "what"), [
    ("q1 0 d1 1\nq1 0 d2\n", 2, "columns", "expected 4 columns"),
    ("q1 0 d1 yes\n", 1, "relevance", "not an integer"),
    ("q1 0 d1 1\nq1 0 d1 0\n", 2, "docid", "duplicate judgement"),
])
def test_trec_qrels_errors(tmp_path: Path, text: str, line: int, field: str,
                           what: str) -> None:
    path = write(tmp_path / "qrels.txt", text)
    with pytest.raises(DataError) as exc:
        trec.load_qrels(path)
    assert what in located(exc, path, line, field)


def test_write_run_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a finite number"):
        trec.write_run(tmp_path / "r.trec", {"q": {"d": float("inf")}})
    with pytest.raises(DataError, match="whitespace"):
        trec.write_run(tmp_path / "r.trec", {"q": {"d 1": 1.0}})
    assert not (tmp_path / "r.trec").exists()


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_bytes(b"q1 Q0 d1 1 2.0 t\nq1 Q0 d\xff 2 1.0 t\n")
    with pytest.raises(DataError) as exc:
        trec.load_run(path)
    assert "not valid UTF-8" in located(exc, path, 2, None)


@pytest.mark.parametrize(("row", "field", "what"), [
    ({"query": "q"}, "qid", "missing field"),
    ({"qid": "1", "query": "q"}, "candidates", "missing field"),
    ({"qid": "1", "query": "q", "candidates": {}}, "candidates", "expected a list"),
    ({"qid": "1", "query": "q", "candidates": [{"docid": "a"}, {"text": "x"}]},
     "candidates[1].docid", "missing field"),
    ({"qid": "1", "query": "q", "candidates": [{"docid": "a", "score": "high"}]},
     "candidates[0].score", "not a number"),
    ({"qid": "1", "query": "q", "candidates": [{"docid": "a"}, {"docid": "a"}]},
     "candidates[1].docid", "duplicate docid 'a'"),
    ({"qid": "1", "query": "q", "candidates": [{"docid": "a", "text": ""}]},
     "candidates[0].text", "empty document"),
    ({"qid": "1", "query": " ", "candidates": []}, "query", "empty query"),
])
def test_candidates_errors(tmp_path: Path, row: dict, field: str, what: str) -> None:
    path = jsonl(tmp_path / "cands.jsonl", [{"qid": "0", "query": "ok", "candidates": []}, row])
    with pytest.raises(DataError) as exc:
        candidates.load_candidates(path)
    assert what in located(exc, path, 2, field)


def test_candidates_duplicate_qid_and_skip(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "c.jsonl", [
        {"qid": "1", "query": "q", "candidates": [{"docid": "a", "text": ""},
                                                  {"docid": "b", "text": "t"}]},
        {"qid": "2", "query": "", "candidates": []},
        {"qid": "1", "query": "again", "candidates": []}])
    with pytest.raises(DataError) as exc:
        candidates.load_candidates(path, on_empty="skip")
    assert "duplicate qid '1' (first at line 1)" in located(exc, path, 3, "qid")
    skipped = Skipped()
    got = list(candidates.iter_candidates(jsonl(tmp_path / "d.jsonl", [
        {"qid": "1", "query": "q", "candidates": [{"docid": "a", "text": ""},
                                                  {"docid": "b", "text": "t"}]},
        {"qid": "2", "query": "", "candidates": []}]), on_empty="skip", skipped=skipped))
    assert [c.qid for c in got] == ["1"] and got[0].candidates == [Candidate("b", "t")]
    assert skipped.counts == {"empty candidate text": 1, "empty query": 1}


@pytest.mark.parametrize(("row", "field", "what"), [
    ({"pos": ["p"], "neg": []}, "query", "missing field"),
    ({"query": "q", "pos": [], "neg": []}, "pos", "at least one positive"),
    ({"query": "q", "pos": ["p"], "neg": ["n", 3]}, "neg[1]", "expected a string"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": [1.0, 2.0]}, "neg_scores",
     "list of 1 numbers"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": ["NaN"]}, "neg_scores[0]",
     "not a finite number"),
    ({"query": "q", "pos": ["p"], "neg": ["n", " "]}, "neg[1]", "empty text"),
])
def test_flag_errors(tmp_path: Path, row: dict, field: str, what: str) -> None:
    path = jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos": ["p"], "neg": []}, row])
    with pytest.raises(DataError) as exc:
        flag.load_flag(path)
    assert what in located(exc, path, 2, field)


def test_flag_empty_skipped(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"query": "", "pos": ["p"], "neg": []},
                                        {"query": "q", "pos": ["p"], "neg": []}])
    skipped = Skipped()
    assert [r.query for r in flag.iter_flag(path, on_empty="skip", skipped=skipped)] == ["q"]
    assert skipped.total == 1


# ----------------------------------------------------------------------------- unknown ids


def test_check_ids_default_raises_naming_ids() -> None:
    corpus = {d.docid: d for d in DOCS}
    run = {"q1": {"d1": 1.0, "x1": 0.5, "x2": 0.1}, "2": {"x3": 1.0, "x4": 0.0, "x5": 1.0,
                                                        "x6": 2.0}}
    with pytest.raises(DataError) as exc:
        check_ids(run, corpus)
    msg = str(exc.value)
    assert exc.value.field == "docid"
    assert "6 unknown document id(s) not in the corpus: 'x1', 'x2', 'x3', 'x4', 'x5', ..." \
        in msg


def test_check_ids_on_a_file_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "run.trec", "q1 Q0 d1 1 2.0 t\nq1 Q0 nope 2 1.0 t\n"
                                        "zz Q0 d2 1 1.0 t\n")
    with pytest.raises(DataError) as exc:
        check_ids(path, {"d1", "d2"}, QUERIES)
    msg = located(exc, path, 2, "docid")
    assert "1 unknown document id(s) not in the corpus: 'nope' (first at line 2)" in msg
    assert "1 unknown query id(s) not in the queries: 'zz' (first at line 3)" in msg


def test_check_ids_warn_skips_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    run = {"q1": {"d1": 1.0, "x": 0.5}, "2": {"x": 1.0}, "nq": {"d1": 1.0}}
    with caplog.at_level(logging.WARNING, logger="mrr_jax.data"):
        res = check_ids(run, {"d1", "d2"}, QUERIES, on_missing="warn")
    assert res.run == {"q1": {"d1": 1.0}}
    assert res.skipped_entries == 3
    assert res.unknown_docids == ["x"] and res.unknown_qids == ["nq"] and not res.ok
    assert "skipped 3 run entries" in caplog.text
    ok = check_ids({"q1": {"d1": 1.0}}, {"d1"})
    assert ok.ok and ok.run == {"q1": {"d1": 1.0}} and ok.skipped_entries == 0
