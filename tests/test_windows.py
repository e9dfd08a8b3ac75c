"""Long documents as windows (``windows=`` of compute_score / rank / rank_batch, the scoring
job's ``--windows``, ``python -m mrr_jax.windows``). What each test proves:

(a) ``WindowSpec``: text round trip, hashable and frozen, every bad setting refused in one line;
(b) the split by hand: window starts, the last window ending at the passage's end, the
    ``max_windows`` cap, the repeated passage marker, a passage that fits is one window and
    scores exactly as without windows, for every aggregation;
(c) the aggregation by hand: ``max`` / ``mean`` equal the max / mean of each window's token
    slice scored on its own (within 1e-5), ``first`` equals truncation when the window is the
    truncation budget;
(d) ``rank`` / ``rank_batch`` order by the aggregated scores; windows with a cascade refused;
(e) the scoring job: 2 shards merge to the 1-shard run, kill -9 then resume is byte-identical,
    resume with another window setting is refused, window counts recorded per document and in
    the summary;
(f) FLOPs: the windows' predicted cost is the sum of ``Plan.flops`` over the windows scored,
    against truncation, as ``rr.last_windows`` reports after a call;
and the experiment's plumbing, and one SmolLM2 check (slow).

Plumbing runs on the tiny random Llama of ``conftest.py`` (SmolLM2's tokenizer).
"""

import dataclasses
import json
import warnings

import numpy as np
import pytest

from mrr_jax import Plan, Reranker
from mrr_jax.core.windows import AGGREGATIONS, WindowSpec, aggregate, window_starts
from mrr_jax.data import beir, trec
from mrr_jax.inference.windows import NO_LIMIT, encode_windows, window_flops
from mrr_jax.inputs.template import EncodedPair, PairTemplate
from mrr_jax.inputs.windows import split_pair
from mrr_jax.scoring_job import job as score
from tests.test_score_job import kill_mid_job

QUERY = "what does the function return"
LONG = ("Return the sum of the values in the list, or zero when the list is empty. " * 6
        + "The function raises TypeError for values that cannot be added.")
DOCS = [LONG, "Return a copy of the string.", "Open a file and return a stream. " * 5,
        "Compute the logarithm of x to the given base, natural by default."]
MAX_LENGTH, QMAX = 32, 8


@pytest.fixture(scope="module")
def rr(tiny_model):
    return Reranker.from_pretrained(tiny_model)


def pairs_of(docs, query=QUERY):
    return [(query, d) for d in docs]


def budget(rr):
    """The passage tokens truncation keeps beside QUERY after the marker "B:"."""
    return MAX_LENGTH - len(rr.encode(pairs_of(DOCS[:1]), MAX_LENGTH, QMAX)[0].query) - 2


# ----------------------------------------------------------------------------- (a) the spec


@pytest.mark.parametrize("text", ["max", "first", "mean:max_windows=4",
                                  "max:size=384,stride=192", "mean:size=5,stride=5,max_windows=1"])
def test_spec_text_round_trip(text):
    spec = WindowSpec.parse(text)
    assert str(spec) == text and WindowSpec.parse(str(spec)) == spec
    assert WindowSpec.of(spec) is spec and WindowSpec.of(text) == spec


def test_spec_is_frozen_and_hashable():
    a, b = WindowSpec.parse("max:size=8,stride=4"), WindowSpec("max", 8, 4)
    assert a == b and hash(a) == hash(b) and len({a, b, WindowSpec("mean", 8, 4)}) == 2
    assert WindowSpec.parse(" max : stride=4 , size=8 ") == a  # spaces and key order
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.size = 3


@pytest.mark.parametrize("text, message", [
    ("max:stride=0", "stride must be an integer >= 1"),
    ("max:stride=-3", "stride must be an integer >= 1"),
    ("max:size=4,stride=5", "stride 5 is larger than size 4"),
    ("median", "unknown aggregation 'median'"),
    ("", "unknown aggregation ''"),
    ("max:max_windows=0", "max_windows must be an integer >= 1"),
    ("max:size=0", "size must be an integer >= 1"),
    ("max:width=3", "cannot read 'width=3'"),
    ("max:size=abc", "cannot read 'size=abc'"),
    ("max:size", "cannot read 'size'"),
    ("max:", "cannot read ''"),
    ("max:size=3,size=4", "size given twice"),
])
def test_bad_spec_text_is_refused_in_one_line(text, message):
    with pytest.raises(ValueError, match="^windows ") as e:
        WindowSpec.parse(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_spec_objects_and_sizes_are_refused():
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        WindowSpec("max", 8, 0)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        WindowSpec("max", True)
    with pytest.raises(TypeError, match="windows text must be a str"):
        WindowSpec.parse(3)
    with pytest.raises(ValueError, match="size 64 leaves no room for the query in max_length=64"):
        WindowSpec("max", 64).check(64)
    WindowSpec("max", 63).check(64)
    # beside a pair's query: room 10 -> a size of 11 does not fit; a default stride of a
    # default size never leaves a gap, an explicit one may
    assert WindowSpec().sizes(10) == (10, 5) and WindowSpec("max", 1).sizes(10) == (1, 1)
    with pytest.raises(ValueError, match="size 11 is larger than the 10 passage tokens"):
        WindowSpec("max", 11).sizes(10)
    with pytest.raises(ValueError, match="stride 12 is larger than the window size 10"):
        WindowSpec("max", stride=12).sizes(10)


def test_size_beyond_the_room_beside_the_query_is_refused(rr):
    # max_length 32: the query segment (bos + 7 tokens of "A: " + query + "\n") leaves 23
    # tokens, of which the marker "B:" takes 2
    assert budget(rr) == 21
    with pytest.raises(ValueError, match=r"pair 0 .*size 22 is larger than the 21 passage"):
        rr.compute_score(pairs_of(DOCS), windows="max:size=22", max_length=MAX_LENGTH,
                         query_max_length=QMAX)
    with pytest.raises(ValueError, match="stride 7 is larger than size 6"):
        rr.compute_score(pairs_of(DOCS), windows="max:size=6,stride=7")


# ----------------------------------------------------------------------------- (b) the split


def test_window_starts_by_hand():
    assert window_starts(10, 4, 2) == ([0, 2, 4, 6], False)
    assert window_starts(11, 4, 2) == ([0, 2, 4, 6, 7], False)  # the last one ends at 11
    assert window_starts(12, 4, 4) == ([0, 4, 8], False)
    assert window_starts(13, 4, 4) == ([0, 4, 8, 9], False)
    assert window_starts(4, 4, 2) == ([0], False) and window_starts(1, 4, 2) == ([0], False)
    assert window_starts(11, 4, 2, max_windows=2) == ([0, 2], True)  # cap: the first two
    assert window_starts(11, 4, 2, max_windows=5) == ([0, 2, 4, 6, 7], False)
    assert window_starts(11, 4, 2, first_only=True) == ([0], True)
    assert window_starts(3, 4, 2, first_only=True) == ([0], False)


def test_split_pair_by_hand():
    # query 3 tokens, passage = marker (50, 42) + body 10..20 (11 tokens), prompt 2 tokens;
    # max_length 9 -> room 6 = marker + 4 body tokens per window
    pair = EncodedPair((1, 2, 3), (50, 42, *range(10, 21)), (7, 8))
    ws, cut = split_pair(pair, WindowSpec(), 9, marker=(50, 42))
    assert not cut
    assert [w.passage for w in ws] == [(50, 42, 10, 11, 12, 13), (50, 42, 12, 13, 14, 15),
                                       (50, 42, 14, 15, 16, 17), (50, 42, 16, 17, 18, 19),
                                       (50, 42, 17, 18, 19, 20)]
    assert all(w.query == pair.query and w.prompt == pair.prompt for w in ws)
    assert max(len(w.query) + len(w.passage) for w in ws) == 9  # never over max_length
    # the first window is the truncated pair
    assert ws[0].passage == pair.passage[:9 - 3]
    ws, cut = split_pair(pair, WindowSpec("mean", 3, 3, max_windows=2), 9, marker=(50, 42))
    assert cut and [w.passage for w in ws] == [(50, 42, 10, 11, 12), (50, 42, 13, 14, 15)]
    ws, cut = split_pair(pair, WindowSpec("first"), 9, marker=(50, 42))
    assert cut and len(ws) == 1
    # no marker (another tokenizer): plain slices of the passage segment
    ws, _ = split_pair(pair, WindowSpec("max", 6, 6), 9)
    assert [w.passage for w in ws] == [pair.passage[0:6], pair.passage[6:12],
                                       pair.passage[7:13]]
    # a passage that fits is one window: the pair itself
    short = EncodedPair((1, 2, 3), (50, 42, 10, 11), (7, 8))
    assert split_pair(short, WindowSpec("max", 2, 1), 9, marker=(50, 42)) == ([short], False)


def test_marker_is_the_templates(rr):
    tpl = PairTemplate(rr.tokenizer, rr.bos_token_id, rr.prompt)
    whole = rr.encode(pairs_of(DOCS), NO_LIMIT, QMAX)
    assert all(e.passage[:len(tpl.marker)] == tpl.marker for e in whole)
    ws = encode_windows(rr, pairs_of(DOCS), "max", MAX_LENGTH, QMAX)
    assert all(w.passage[:len(tpl.marker)] == tpl.marker for w in ws.windows)
    assert ws.counts.tolist()[1] == 1 and min(ws.counts[[0, 2]]) > 2


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_documents_that_fit_score_exactly_as_without_windows(rr, how):
    pairs = pairs_of(DOCS[1:2] + DOCS[3:])
    plain = rr.compute_score(pairs, max_length=64)
    assert rr.last_truncated == 0
    got = rr.compute_score(pairs, max_length=64, windows=f"{how}:max_windows=2")
    np.testing.assert_array_equal(got, plain)
    assert rr.last_windows.windows == rr.last_windows.documents == 2
    assert rr.last_windows.relative_flops == 1.0 and rr.last_truncated == 0


# ----------------------------------------------------------------------------- (c) aggregation


def test_aggregate_by_hand():
    s = np.array([[1.0, 3.0, 2.0, 5.0, -1.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]], np.float32)
    owner = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(aggregate(s, owner, 3, "max"), [[3, 5, 4], [2, 3, 5]])
    np.testing.assert_array_equal(aggregate(s, owner, 3, "first"), [[1, 5, -1], [0, 3, 4]])
    np.testing.assert_allclose(aggregate(s, owner, 3, "mean"), [[2, 5, 1.5], [1, 3, 4.5]])
    np.testing.assert_array_equal(aggregate(s[0], owner, 3, "max"), [3, 5, 4])  # no lead axis
    with pytest.raises(ValueError, match="a document has no window"):
        aggregate(s, owner, 4, "max")


def hand_window_scores(rr, pairs, size, stride):
    """Each pair's windows built by hand at the token level (the whole passage encoded, the
    marker kept in front of slices ``[start, start + size)`` of the rest, the last slice
    ending at the passage's end), each pair's windows scored on their own."""
    tpl = PairTemplate(rr.tokenizer, rr.bos_token_id, rr.prompt)
    m = len(tpl.marker)
    out = []
    for e in rr.encode(pairs, NO_LIMIT, QMAX):
        body = e.passage[m:]
        starts = list(range(0, max(len(body) - size, 0) + 1, stride))
        if starts[-1] + size < len(body):
            starts.append(len(body) - size)
        rows = [[*e.query, *tpl.marker, *body[s:s + size], *e.prompt] for s in starts]
        out.append(rr.score_tokens(rows, [len(e.query)] * len(rows),
                                   [len(e.prompt)] * len(rows), batch_size=2)[0])
    return out


def test_max_and_mean_equal_each_window_scored_on_its_own(rr):
    pairs = pairs_of(DOCS)
    by_hand = hand_window_scores(rr, pairs, 12, 5)
    kw = dict(max_length=MAX_LENGTH, query_max_length=QMAX)
    got = rr.compute_score(pairs, windows="max:size=12,stride=5", **kw)
    np.testing.assert_allclose(got, [w.max() for w in by_hand], atol=1e-5)
    assert rr.last_windows.windows == sum(map(len, by_hand)) and rr.last_truncated == 0
    got = rr.compute_score(pairs, windows="mean:size=12,stride=5", **kw)
    np.testing.assert_allclose(got, [w.mean() for w in by_hand], atol=1e-5)
    with pytest.warns(UserWarning, match="3 of 4 documents were not scored whole"):
        got = rr.compute_score(pairs, windows="first:size=12,stride=5", **kw)
    np.testing.assert_allclose(got, [w[0] for w in by_hand], atol=1e-5)
    by_exit = rr.compute_score(pairs, windows="max:size=12,stride=5", exits=[6, 4], **kw)
    assert by_exit.shape == (2, 4)
    np.testing.assert_allclose(by_exit[0], [w.max() for w in by_hand], atol=1e-5)


def test_first_is_truncation_when_the_window_is_the_truncation_budget(rr):
    pairs = pairs_of(DOCS)
    kw = dict(max_length=MAX_LENGTH, query_max_length=QMAX)
    with pytest.warns(UserWarning, match="2 of 4 pairs were truncated"):
        trunc = rr.compute_score(pairs, **kw)
    with pytest.warns(UserWarning, match="2 of 4 documents were not scored whole"):
        first = rr.compute_score(pairs, windows="first", **kw)  # default size: all the room
    np.testing.assert_allclose(first, trunc, atol=1e-5)
    assert rr.last_truncated == 2 and rr.last_windows.windows == 4
    # the same budget given explicitly: 32 - 9 query segment tokens - 2 marker tokens
    np.testing.assert_allclose(rr.compute_score(pairs, windows=f"first:size={budget(rr)}",
                                                **kw), trunc, atol=1e-5)
    # max and mean of one window per document (a stride of the whole budget, capped at 1)
    for how in ("max", "mean"):
        np.testing.assert_allclose(rr.compute_score(
            pairs, windows=f"{how}:max_windows=1", **kw), trunc, atol=1e-5)


def test_plans_and_adapters_run_windows_as_pairs(rr):
    """Under a compressing plan, windows are scored like any pair of that plan."""
    pairs = pairs_of(DOCS)
    plan = "depth=5 compress=2:2"
    kw = dict(max_length=MAX_LENGTH, query_max_length=QMAX, plan=plan)
    ws = encode_windows(rr, pairs, "max:max_windows=3", MAX_LENGTH, QMAX)
    each = rr.score_encoded(ws.windows, plan=plan)[0]
    got = rr.compute_score(pairs, windows="max:max_windows=3", **kw)
    np.testing.assert_allclose(got, aggregate(each, ws.owner, 4, "max"), atol=1e-5)
    assert rr.last_windows.plan == str(rr.resolve_plan(plan))


# ----------------------------------------------------------------------------- (d) ranking


def test_rank_follows_the_aggregated_scores(rr):
    kw = dict(max_length=MAX_LENGTH, query_max_length=QMAX)
    for how in AGGREGATIONS:
        scores = rr.compute_score(pairs_of(DOCS), windows=how, **kw)
        ranked = rr.rank(QUERY, DOCS, windows=how, **kw)
        assert [r["index"] for r in ranked] == list(np.argsort(-scores, kind="stable"))
        np.testing.assert_allclose([r["score"] for r in ranked], np.sort(scores)[::-1],
                                   atol=1e-5)
    two = rr.rank_batch([(QUERY, DOCS), ("open a file", DOCS[2:])], windows="max", top_k=2,
                        **kw)
    assert rr.last_windows.documents == 6
    for got, (q, docs) in zip(two, [(QUERY, DOCS), ("open a file", DOCS[2:])]):
        alone = rr.rank(q, docs, windows="max", top_k=2, **kw)
        assert [r["index"] for r in got] == [r["index"] for r in alone]
    assert rr.rank_batch([(QUERY, []), ("open a file", DOCS[1:2])], windows="mean") == [
        [], [{"index": 0, "score": pytest.approx(float(rr.compute_score(
            pairs_of(DOCS[1:2], "open a file"))[0]), abs=1e-5), "document": DOCS[1]}]]
    assert rr.rank(QUERY, [], windows="max") == []
    with pytest.raises(ValueError, match="windows= applies to a plan's scores"):
        rr.rank(QUERY, DOCS, cascade="depth=3@4 > full@2", windows="max")


# ----------------------------------------------------------------------------- (f) FLOPs


def test_flops_count_every_window(rr):
    pairs = pairs_of(DOCS)
    plan = Plan.parse("depth=5 compress=2:2").resolve(6)
    stats = window_flops(rr, pairs, "max:max_windows=3", plan=plan, max_length=MAX_LENGTH,
                         query_max_length=QMAX)
    ws = encode_windows(rr, pairs, "max:max_windows=3", MAX_LENGTH, QMAX)
    by_hand = sum(plan.flops(rr.cfg, len(w.query), len(w.passage), len(w.prompt))
                  for w in ws.windows)
    trunc = sum(plan.flops(rr.cfg, len(e.query), len(e.passage), len(e.prompt))
                for e in rr.encode(pairs, MAX_LENGTH, QMAX))
    assert stats.flops == pytest.approx(by_hand, rel=1e-12)
    assert stats.truncation_flops == pytest.approx(trunc, rel=1e-12)
    assert stats.windows == len(ws.windows) == 1 + 3 + 3 + 1 and stats.documents == 4
    assert stats.mean_windows == 2.0 and stats.relative_flops == pytest.approx(by_hand / trunc)
    assert stats.relative_flops > 2.0  # the long documents' 3 windows are all full length
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rr.compute_score(pairs, plan=plan, windows="max:max_windows=3", max_length=MAX_LENGTH,
                         query_max_length=QMAX)
    assert rr.last_windows == stats and stats.cut == int(ws.cut.sum()) == 1  # LONG: capped
    d = stats.as_dict()
    assert d["mean_windows"] == 2.0 and d["spec"] == "max:max_windows=3"


# ----------------------------------------------------------------------------- (e) the job


WINDOWS = "max:max_windows=3"


@pytest.fixture(scope="module")
def windowed_job(tmp_path_factory, tiny_job_args):
    out = tmp_path_factory.mktemp("windows") / "job"
    assert score.main([*tiny_job_args, "--windows", WINDOWS, "--out", str(out)]) == 0
    return out


def test_job_records_windows_and_scores_as_the_library(windowed_job, rr, example_data):
    summary = json.loads((windowed_job / "summary.json").read_text())
    w = summary["windows"]
    rows = (windowed_job / "windows.tsv").read_text().splitlines()
    assert rows[0] == "qid\tdocid\twindows" and len(rows) - 1 == summary["pairs"] == w["documents"]
    counts = {(q, d): int(n) for q, d, n in (r.split("\t") for r in rows[1:])}
    assert sum(counts.values()) == w["windows"] and max(counts.values()) == 3
    assert w["spec"] == WINDOWS and w["mean_windows"] == pytest.approx(w["windows"] / 60)
    assert w["relative_flops"] > 1 and summary["config"]["windows"] == WINDOWS
    manifest = json.loads((windowed_job / "shards" / "0-of-1" / "manifest.json").read_text())
    assert manifest["windows"] == WINDOWS
    # the same scores and counts as the library's windows over the same pairs
    queries = beir.load_queries(example_data / "queries.jsonl")
    corpus = beir.load_corpus(example_data / "corpus.jsonl")
    run = trec.load_run(windowed_job / "run.trec")
    qid = sorted(run, key=trec.qid_key)[0]
    docids = list(run[qid])
    pairs = [(queries[qid], corpus[d].passage) for d in docids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = rr.compute_score(pairs, windows=WINDOWS, max_length=40, query_max_length=8)
    np.testing.assert_allclose([run[qid][d] for d in docids], alone, atol=1e-5)
    assert [counts[qid, d] for d in docids] == encode_windows(
        rr, pairs, WINDOWS, 40, 8).counts.tolist()


def test_job_two_shards_equal_one(windowed_job, tiny_job_args, tmp_path):
    out = tmp_path / "job"
    argv = [*tiny_job_args, "--windows", WINDOWS, "--out", str(out)]
    assert score.main([*argv, "--shard", "0/2"]) == 0
    assert score.main([*argv, "--shard", "1/2"]) == 0
    for name in ("run.trec", "windows.tsv"):
        assert (out / name).read_bytes() == (windowed_job / name).read_bytes(), name
    one = json.loads((windowed_job / "summary.json").read_text())["windows"]
    two = json.loads((out / "summary.json").read_text())["windows"]
    assert one == pytest.approx(two)


def test_job_kill_resume_and_another_setting_refused(windowed_job, tiny_job_args, tmp_path, capsys):
    out = tmp_path / "job"
    argv = [*tiny_job_args, "--windows", WINDOWS]
    before = kill_mid_job(argv, out)
    assert 1 <= len(before["done"]) < len(before["assigned"])
    for other in (["--windows", "mean:max_windows=3"], ["--windows", "max"], []):
        assert score.main([*tiny_job_args, *other, "--resume", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "refusing to resume" in err and "windows" in err
    assert score.main([*argv, "--resume", "--out", str(out)]) == 0
    for name in ("run.trec", "windows.tsv"):
        assert (out / name).read_bytes() == (windowed_job / name).read_bytes(), name


def test_job_window_errors(tiny_job_args, tmp_path, capsys):
    for extra, message in ((["--windows", "max:stride=0"], "stride must be"),
                           (["--windows", "max:size=40"], "leaves no room for the query"),
                           # fits max_length, not beside the queries: refused before scoring
                           (["--windows", "max:size=31"], "size 31 is larger than the"),
                           (["--windows", "max", "--cascade", "depth=3@5 > full@2"],
                            "not to a cascade's")):
        out = tmp_path / "x"
        assert score.main([*tiny_job_args, *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not out.exists()


# ----------------------------------------------------------------------------- experiment


def test_experiment_plumbing(tiny_model, example_data, tmp_path):
    from mrr_jax.experiments import windows as experiment

    out = tmp_path / "exp"
    assert experiment.main([
        "--model", str(tiny_model), "--data", str(example_data), "--split", "dev",
        "--first-stage", str(example_data / "bm25" / "dev.trec"), "--top-k", "4",
        "--max-queries", "5", "--max-length", "40", "--query-max-length", "8",
        "--windows", "max_windows=3", "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "windows.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names == ["truncation", "max", "first", "mean", "first stage"]
    rows = {r["name"]: r for r in result["rows"]}
    # FirstP with the default size is truncation: the same tokens, the same metrics
    for m in ("RR@10", "nDCG@10"):
        assert rows["first"]["metrics"][m] == pytest.approx(rows["truncation"]["metrics"][m])
    assert rows["first"]["flops_rel"] == pytest.approx(1.0) and rows["first"]["mean_windows"] == 1
    assert rows["max"]["vs_truncation"]["RR@10"]["queries"] == result["queries"] == 5
    assert 1 < rows["max"]["mean_windows"] <= 3 and rows["max"]["flops_rel"] > 1
    assert "MaxP (max)" in (out / "windows.md").read_text()
    assert experiment.main(["--data", str(example_data), "--first-stage", "x.trec",
                            "--windows", "size=0", "--out", str(out)]) == 2


# ----------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_smollm2_max_equals_each_window_scored_alone(smollm2_dir):
    real = Reranker.from_pretrained(smollm2_dir)
    docs = [LONG, "Return a copy of the string."]
    ws = encode_windows(real, pairs_of(docs), "max:stride=8", MAX_LENGTH, QMAX)
    alone = np.array([real.score_encoded([w])[0, 0] for w in ws.windows])
    got = real.compute_score(pairs_of(docs), windows="max:stride=8", max_length=MAX_LENGTH,
                             query_max_length=QMAX)
    np.testing.assert_allclose(got, aggregate(alone, ws.owner, 2, "max"), atol=1e-4)
    assert real.last_windows.windows == len(ws.windows) > 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trunc = real.compute_score(pairs_of(docs), max_length=MAX_LENGTH, query_max_length=QMAX)
        first = real.compute_score(pairs_of(docs), windows="first", max_length=MAX_LENGTH,
                                   query_max_length=QMAX)
    np.testing.assert_allclose(first, trunc, atol=1e-4)
