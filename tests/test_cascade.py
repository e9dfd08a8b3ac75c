"""Cascades (``mrr_jax.core.cascade``, ``mrr_jax.inference.cascade``, ``rank(cascade=)``,
``python -m mrr_jax.score --cascade``).

Text and validation tests need no model. On a tiny random model: a resumed pass equals the same
plan run from scratch on the same batch (plumbing of the state: regions, compressed lengths,
the importance row at the boundary), the cascade's ranking rule, when a stage may resume, the
API and the scoring job (2 shards = 1, kill -9 + resume). On SmolLM2: resuming is exact on a
real model, with and without width compression in the prefix, for several batch shapes.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax import Plan
from mrr_jax.core.cascade import Cascade, Stage, extends
from mrr_jax.core.forward import resume_forward, score_forward
from mrr_jax.core.lora import Adapter, LoraConfig, init_lora
from mrr_jax.data import trec
from mrr_jax.inference.adapters import PlanAdapter
from mrr_jax.inference.cascade import run_cascade, stage_resumes
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.scoring_job import job as score
from mrr_jax.weights.adapters import AdapterRole
from tests.test_compression import TINY, random_rows, tiny_reranker
from tests.test_score_job import kill_mid_job


# ----------------------------------------------------------------------------- text
@pytest.mark.parametrize("text", [
    "depth=12@100 > full@20",
    "depth=12 compress=4:2@100 > depth=20 compress=4:2,12:2@30 > full@5",
    "depth=8 mode=select > depth=16@10",
    "full@7",
])
def test_text_round_trips(text):
    c = Cascade.parse(text)
    assert Cascade.parse(str(c)) == c and hash(Cascade.parse(str(c))) == hash(c)
    assert len({c, Cascade.parse(text)}) == 1


def test_parse_reads_stages_and_keeps():
    c = Cascade.parse(" depth=12 @ 100 >full@20 ")
    assert c.stages == (Stage(Plan(depth=12), 100), Stage(Plan(), 20))
    assert str(c) == "depth=12 mode=merge@100 > full@20"
    assert Cascade.parse("depth=6").stages == (Stage(Plan(depth=6), None),)


@pytest.mark.parametrize("text, message", [
    ("depth=12@20 > full@20", "must keep fewer"),
    ("depth=12@10 > full@20", "must keep fewer"),
    ("depth=12@100 > full", "only the first stage may leave out @KEEP"),
    ("depth=12@100 > depth=12@10", "repeats the previous stage's plan"),
    ("depth=12@0 > full@0", "keep must be an integer >= 1"),
    ("depth=12@ten > full@2", "@KEEP must be a whole number"),
    ("depth=12@-3", "@KEEP must be a whole number"),
    ("depth=12@100 > @20", "stage 2 has no plan"),
    ("depth=12@100 > width=3@20", "stage 2: plan 'width=3': cannot read"),
    ("depth=12@100 >> full@2", "stage 2 has no plan"),
    ("", "stage 1 has no plan"),
])
def test_bad_cascades_are_one_clear_line(text, message):
    with pytest.raises(ValueError, match=message) as e:
        Cascade.parse(text)
    assert "\n" not in str(e.value)


def test_resolve_checks_the_model():
    with pytest.raises(ValueError, match="3 stages for a model of 2 layers"):
        Cascade.parse("depth=1@9 > depth=2@5 > full@2").resolve(2)
    with pytest.raises(ValueError, match="beyond the model's 8 layers"):
        Cascade.parse("depth=4@10 > depth=12@2").resolve(8)
    with pytest.raises(TypeError, match="Cascade or its text"):
        tiny_reranker().resolve_cascade(["full@2"])
    with pytest.raises(ValueError, match="below the first exit"):
        tiny_reranker().resolve_cascade("depth=1@9 > full@2")  # start_layer 2


@pytest.mark.parametrize("earlier, later, expected", [
    ("depth=12", "depth=30", True),
    ("depth=12", "depth=30 compress=12:2", True),  # compresses at the boundary: its own
    ("depth=12", "depth=30 compress=20:2 mode=select", True),  # the prefix has no compression
    ("depth=12 compress=4:2", "depth=30 compress=4:2,16:2", True),
    ("depth=12 compress=4:2", "depth=30 compress=4:4", False),
    ("depth=12 compress=4:2", "depth=30", False),
    ("depth=12", "depth=30 compress=4:2", False),
    ("depth=12 compress=4:2", "depth=30 compress=4:2 mode=select", False),
    ("depth=30", "depth=12", False),
    ("depth=12", "depth=12 compress=4:2", False),
])
def test_which_plans_extend_which(earlier, later, expected):
    a, b = Plan.parse(earlier).resolve(30), Plan.parse(later).resolve(30)
    assert extends(a, b) is expected


def test_flops_count_a_resumed_prefix_once():
    from mrr_jax.core.config import ModelConfig

    cfg = ModelConfig(family="llama", vocab_size=64, hidden_size=64, intermediate_size=128,
                      num_layers=30, num_heads=4, num_kv_heads=2, head_dim=16,
                      rms_norm_eps=1e-6, rope_theta=1e4)
    lengths = (10, 100, 12)
    f = {p: Plan.parse(p).flops(cfg, *lengths) for p in ("depth=12", "full", "depth=20",
                                                         "depth=20 compress=12:2")}
    c = Cascade.parse("depth=12@100 > full@20")
    assert c.flops(cfg, *lengths) == pytest.approx(100 * f["depth=12"]
                                                   + 20 * (f["full"] - f["depth=12"]))
    assert c.flops(cfg, *lengths, resume=False) == pytest.approx(100 * f["depth=12"]
                                                                 + 20 * f["full"])
    assert c.flops(cfg, *lengths, documents=10) == pytest.approx(
        10 * f["depth=12"] + 10 * (f["full"] - f["depth=12"]))  # keeps cut to what there is
    c = Cascade.parse("depth=20 compress=12:2@50 > depth=12@5")  # no resume: shallower
    assert c.flops(cfg, *lengths) == pytest.approx(50 * f["depth=20 compress=12:2"]
                                                   + 5 * f["depth=12"])
    with pytest.raises(ValueError, match="pass documents="):
        Cascade.parse("depth=12 > full@5").flops(cfg, *lengths)


# ----------------------------------------------------------------------------- resume (tiny)
def _pairs(n, seed=1):
    return [EncodedPair.from_ids(ids, q, r) for ids, q, r in random_rows(n, seed=seed)]


def _state_then_resume(rr, pairs, first: str, second: str):
    """(resumed scores, from-scratch scores) of plan ``second`` on one batch, the resumed
    pass continuing ``first``'s states on that same batch."""
    cfg = rr.cfg
    p1, p2 = (Plan.parse(p).resolve(cfg.num_layers) for p in (first, second))
    arrays = {k: jnp.asarray(v) for k, v in batching.pack(pairs, len(pairs)).items()}
    need_w = p1.depth in dict(p2.compress)
    kw = dict(cfg=cfg, start_layer=rr.start_layer)
    _, aux = score_forward(rr.params, rr.heads, **arrays, plan=p1, exits=(p1.depth,),
                           return_state=True, state_importance=need_w, **kw)
    st = aux["state"]
    resumed = resume_forward(rr.params, rr.heads, st["xq"], st["xp"], st["xr"],
                             arrays["q_len"], st["p_len"], arrays["r_len"], st.get("w"),
                             plan=p2, start=p1.depth, exits=(p2.depth,), **kw)
    scratch = score_forward(rr.params, rr.heads, **arrays, plan=p2, exits=(p2.depth,), **kw)
    return np.asarray(resumed), np.asarray(scratch)


RESUMABLE = [("depth=3", "full"),
             ("depth=3 compress=2:2", "depth=8 compress=2:2,5:2"),
             ("depth=4", "depth=8 compress=4:2"),  # compresses at the boundary: needs w
             ("depth=3 compress=2:4 mode=select", "depth=7 compress=2:4,3:2 mode=select")]


@pytest.mark.parametrize("first, second", RESUMABLE)
@pytest.mark.parametrize("n", [3, 8])
def test_resumed_pass_equals_the_plan_from_scratch(first, second, n):
    resumed, scratch = _state_then_resume(tiny_reranker(), _pairs(n, seed=n), first, second)
    np.testing.assert_allclose(resumed, scratch, rtol=0, atol=1e-5)


def test_resume_refuses_what_it_cannot_continue():
    rr = tiny_reranker()
    x = jnp.zeros((2, 8, TINY.hidden_size))
    lens = jnp.asarray([3, 3])
    with pytest.raises(ValueError, match="compresses at layer 4: pass w"):
        resume_forward(rr.params, rr.heads, x, x, x, lens, lens, lens, cfg=TINY,
                       plan=Plan.parse("compress=4:2").resolve(8), start=4, exits=(8,),
                       start_layer=2)
    with pytest.raises(ValueError, match="must be past the 4 layers run"):
        resume_forward(rr.params, rr.heads, x, x, x, lens, lens, lens, cfg=TINY,
                       plan=Plan().resolve(8), start=4, exits=(4,), start_layer=2)


# ----------------------------------------------------------------------------- runner (tiny)
def _scratch(rr, pairs, plan):
    return rr.score_encoded(pairs, plan=plan, batch_size=4)[0]


def _check_against_scratch(rr, queries, results, c, atol=1e-5):
    for pairs, r in zip(queries, results):
        for s, stage in enumerate(c.stages):
            idx = np.flatnonzero(r.stage == s)
            if len(idx):
                np.testing.assert_allclose(r.scores[idx],
                                           _scratch(rr, [pairs[i] for i in idx], stage.plan),
                                           rtol=0, atol=atol)


@pytest.mark.parametrize("text", [
    "depth=3@12 > full@4",
    "depth=3 compress=2:2@12 > depth=5 compress=2:2,3:2@6 > full@2",
    "depth=4 > depth=8 compress=4:2@3",
])
def test_cascade_scores_and_order(text):
    rr = tiny_reranker()
    queries = [_pairs(14, seed=3), _pairs(5, seed=4), _pairs(1, seed=5)]
    c = rr.resolve_cascade(text)
    results, stats = run_cascade(rr, queries, c, batch_size=4)
    assert stats.resumed == [False] + [c.resumes(i) for i in range(1, len(c.stages))]
    _check_against_scratch(rr, queries, results, c)
    for pairs, r in zip(queries, results):
        n = len(pairs)
        assert sorted(r.order) == list(range(n))
        first = c.stages[0].keep or n
        # unscored documents come last, in their given order
        assert [d for d in r.order if r.stage[d] < 0] == list(range(min(first, n), n))
        # stages: later first; within a stage, by its score (best first)
        stages = [int(r.stage[d]) for d in r.order if r.stage[d] >= 0]
        assert stages == sorted(stages, reverse=True)
        for s in set(stages):
            vals = [r.scores[d] for d in r.order if r.stage[d] == s]
            assert vals == sorted(vals, reverse=True)
        # each stage scores exactly the best `keep` of the stage before
        for s in range(1, len(c.stages)):
            prev = [d for d in range(n) if r.stage[d] >= s - 1]
            vals = _scratch(rr, [pairs[d] for d in prev], c.stages[s - 1].plan)
            best = [prev[i] for i in np.argsort(-vals, kind="stable")]
            assert {d for d in range(n) if r.stage[d] >= s} == set(best[:c.stages[s].keep])
    total = [min(s.keep or 99, len(q)) for q in queries for s in c.stages[:1]]
    assert stats.pairs[0] == sum(total)


def _plan_adapter(rr, role: str, seed: int) -> PlanAdapter:
    cfg = LoraConfig(rank=2, alpha=4.0, dropout=0.0)
    tree = init_lora(jax.random.key(seed), rr.params, rr.heads, cfg)
    rng = np.random.default_rng(seed)
    tree = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(0.2 * rng.standard_normal(x.shape), x.dtype)
        if p[-1].key == "b" else x, tree)
    return PlanAdapter(Adapter.of(tree, cfg), AdapterRole.parse(role))


def test_a_stage_with_other_adapters_runs_from_the_start():
    """A horizontal adapter serves only plans that compress with its ratio, also in their
    prefix layers: a stage that adds that ratio cannot reuse states computed without it."""
    base = tiny_reranker()
    rr = base.with_adapters([_plan_adapter(base, "stage1", 0), _plan_adapter(base, "h2", 1)])
    c = rr.resolve_cascade("depth=4@10 > depth=8 compress=5:2@3")
    assert c.resumes(1) and not stage_resumes(rr, c, 1)
    c2 = rr.resolve_cascade("depth=4@10 > full@3")
    assert stage_resumes(rr, c2, 1)
    queries = [_pairs(10, seed=6)]
    for casc in (c, c2):
        results, stats = run_cascade(rr, queries, casc, batch_size=4)
        assert stats.resumed == [False, stage_resumes(rr, casc, 1)]
        _check_against_scratch(rr, queries, results, casc)
    compat = tiny_reranker(compat="reference")
    assert not stage_resumes(compat, compat.resolve_cascade("depth=4@10 > full@3"), 1)


# ----------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def tiny_rr(tiny_model):
    from mrr_jax import Reranker

    return Reranker.from_pretrained(tiny_model, start_layer=2)


DOCS = ["the cat sat on the mat", "python lists sort in place with sort()",
        "sorted() returns a new list", "a recipe for bread", "lists and tuples differ",
        "sockets carry bytes", "the mat was red", "sort keys can be functions"]


def test_rank_with_a_cascade(tiny_rr):
    text = "depth=3@6 > full@3"
    out = tiny_rr.rank("how to sort a list", DOCS, cascade=text, max_length=40)
    assert [r["index"] for r in out][6:] == [6, 7]  # never scored: given order
    assert [r["stage"] for r in out] == [1, 1, 1, 0, 0, 0, -1, -1]
    assert all(np.isnan(r["score"]) for r in out[6:])
    enc = tiny_rr.encode([("how to sort a list", d) for d in DOCS], 40)
    (res,), _ = run_cascade(tiny_rr, [enc], tiny_rr.resolve_cascade(text))
    assert [r["index"] for r in out] == res.order
    top = tiny_rr.rank("how to sort a list", DOCS, cascade=text, max_length=40, top_k=2)
    assert top == out[:2]
    full = tiny_rr.rank("how to sort a list", DOCS, plan="full", max_length=40)
    by_full = {r["index"]: r["score"] for r in full}
    for r in out[:3]:
        assert r["score"] == pytest.approx(by_full[r["index"]], abs=1e-5)


def test_rank_batch_keeps_each_query_as_alone(tiny_rr):
    reqs = [("how to sort a list", DOCS), ("red mat", DOCS[:3]), ("bread", [])]
    for kw in ({"plan": "depth=4"}, {"cascade": "depth=3@5 > full@2"}):
        many = tiny_rr.rank_batch(reqs, max_length=40, batch_size=4, **kw)
        for (q, docs), got in zip(reqs, many):
            alone = tiny_rr.rank(q, docs, max_length=40, batch_size=4, **kw)
            assert [r["index"] for r in got] == [r["index"] for r in alone]
            np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in alone],
                                       atol=1e-5)
    few = tiny_rr.rank_batch(reqs, cascade="depth=3@5 > full@2", max_length=40,
                             queries_in_flight=1)
    assert [[r["index"] for r in x] for x in few] == [
        [r["index"] for r in x] for x in tiny_rr.rank_batch(
            reqs, cascade="depth=3@5 > full@2", max_length=40)]


def test_rank_cascade_errors(tiny_rr):
    with pytest.raises(ValueError, match="plan= or cascade=, not both"):
        tiny_rr.rank("q", DOCS, plan="full", cascade="depth=3@5 > full@2")
    with pytest.raises(ValueError, match="not to a cascade"):
        tiny_rr.rank("q", DOCS, cascade="depth=3@5 > full@2", fuse=0.5,
                     first_stage_scores=[1.0] * len(DOCS))
    with pytest.raises(ValueError, match="must keep fewer"):
        tiny_rr.rank("q", DOCS, cascade="depth=3@5 > full@5")
    with pytest.raises(TypeError, match="list of \\(query, documents\\) requests"):
        tiny_rr.rank_batch(("q", DOCS))
    with pytest.raises(ValueError, match="queries_in_flight"):
        tiny_rr.rank_batch([("q", DOCS)], cascade="full@2", queries_in_flight=0)


# ----------------------------------------------------------------------------- scoring job
@pytest.fixture(scope="module")
def casc_common(tiny_model, example_data):
    d = example_data
    return ["--model", str(tiny_model), "--corpus", str(d / "corpus.jsonl"),
            "--queries", str(d / "queries.jsonl"), "--run", str(d / "bm25" / "dev.trec"),
            "--top-k", "5", "--max-length", "40", "--query-max-length", "8",
            "--batch-size", "10", "--chunk-pairs", "10", "--no-progress",
            "--cascade", "depth=4@5 > depth=6 compress=5:2@2"]


@pytest.fixture(scope="module")
def casc_reference(tmp_path_factory, casc_common):
    out = tmp_path_factory.mktemp("casc") / "job"
    assert score.main([*casc_common, "--out", str(out)]) == 0
    return out


def test_cascade_job_writes_the_cascade_order(casc_reference, tiny_model, example_data):
    out = casc_reference
    run = trec.load_run(out / "run.trec")
    rows = [line.split("\t") for line in (out / "cascade.tsv").read_text().splitlines()[1:]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cascade"] == "depth=4 mode=merge@5 > depth=6 compress=5:2 mode=merge@2"
    n_q = len(run)
    assert summary["stages"][0]["pairs"] == 5 * n_q and summary["stages"][1]["pairs"] == 2 * n_q
    assert summary["pairs"] == 7 * n_q
    by_q: dict = {}
    for qid, docid, rank, stage, s in rows:
        by_q.setdefault(qid, []).append((docid, int(rank), int(stage), float(s)))
    assert set(by_q) == set(run)
    from mrr_jax import Reranker
    from mrr_jax.data import beir

    rr = Reranker.from_pretrained(tiny_model)
    queries = beir.load_queries(example_data / "queries.jsonl")
    corpus = beir.load_corpus(example_data / "corpus.jsonl")
    first = trec.top_k(trec.load_run(example_data / "bm25" / "dev.trec"), 5)
    qids = sorted(run)[:4]
    reqs = [(queries[q], [corpus[d].passage for d in first[q]]) for q in qids]
    api = rr.rank_batch(reqs, cascade="depth=4@5 > depth=6 compress=5:2@2", max_length=40,
                        query_max_length=8, batch_size=10)
    for q, ranked in zip(qids, api):
        docids = list(first[q])
        got = by_q[q]
        assert [d for d, *_ in got] == [d for d, _ in trec.ranking(run[q])]  # run.trec order
        assert [r for _, r, _, _ in got] == list(range(1, 6))
        assert [docids[r["index"]] for r in ranked] == [d for d, *_ in got]
        assert [r["stage"] for r in ranked] == [st for _, _, st, _ in got] == [1, 1, 0, 0, 0]
        np.testing.assert_allclose([r["score"] for r in ranked], [s for *_, s in got],
                                   atol=1e-5)


def test_cascade_job_two_shards_equal_one(casc_reference, casc_common, tmp_path):
    out = tmp_path / "job"
    assert score.main([*casc_common, "--shard", "0/2", "--out", str(out)]) == 0
    assert score.main([*casc_common, "--shard", "1/2", "--out", str(out)]) == 0
    for name in ("run.trec", "cascade.tsv"):
        assert (out / name).read_bytes() == (casc_reference / name).read_bytes()


def test_cascade_job_kill_and_resume(casc_reference, casc_common, tmp_path):
    out = tmp_path / "job"
    before = kill_mid_job(casc_common, out)
    assert 0 < len(before["done"]) < before["num_chunks"] and not before["complete"]
    assert score.main([*casc_common, "--resume", "--out", str(out)]) == 0
    for name in ("run.trec", "cascade.tsv"):
        assert (out / name).read_bytes() == (casc_reference / name).read_bytes()
    # a resume with another cascade is refused
    other = [*casc_common[:-1], "depth=5@5 > full@2"]
    assert score.main([*other, "--resume", "--out", str(out)]) == 2


@pytest.mark.parametrize("extra, message", [
    (["--plan", "depth=4"], "--cascade replaces --plan"),
    (["--fuse", "0.3"], "not to a cascade's"),
    (["--top-k", "7"], "first stage keeps 5 candidates but --top-k is 7"),
])
def test_cascade_job_errors(casc_common, tmp_path, capsys, extra, message):
    assert score.main([*casc_common, *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cascade_job_bad_text(casc_common, tmp_path, capsys):
    bad = [*casc_common[:-1], "depth=4@5 > full@9"]
    assert score.main([*bad, "--out", str(tmp_path / "o")]) == 2
    assert "must keep fewer" in capsys.readouterr().err


# ----------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smol(smollm2_dir):
    from mrr_jax import Reranker

    return Reranker.from_pretrained(smollm2_dir)


SMOL_DOCS = [
    "To sort a list in place, call list.sort(); sorted() returns a new sorted list.",
    "The sockets module gives access to the BSD socket interface.",
    "A dictionary maps keys to values; keys must be hashable.",
    "Use open() with a context manager to read a file line by line.",
    "list.sort(key=len) sorts strings by their length, shortest first.",
    "Tuples are immutable sequences, often used for heterogeneous data.",
    "The heapq module implements a priority queue on top of a plain list.",
    "Reverse a list with reversed() or by slicing it with a step of -1.",
    "JSON text is parsed with json.loads and written with json.dumps.",
    "Bisect keeps a list sorted as items are inserted.",
]


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [
    ("depth=12", "full"),
    ("depth=10 compress=4:2", "depth=24 compress=4:2,16:2"),
    ("depth=12", "depth=30 compress=12:2"),
])
def test_resume_is_exact_on_smollm2(smol, first, second):
    """Resumed scores equal the plan run from scratch on the same pairs (float32, 1e-5),
    without and with compression in the prefix and at the boundary, for batches of 3 and 10
    rows of real text."""
    enc = smol.encode([("how do I sort a list in python", d) for d in SMOL_DOCS], 128)
    for n in (3, 10):
        resumed, scratch = _state_then_resume(smol, enc[:n], first, second)
        np.testing.assert_allclose(resumed, scratch, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cascade_on_smollm2_matches_scratch(smol):
    """Across re-batching the survivors (other rows, other shapes) a resumed stage agrees with
    its plan from scratch to float32 rounding: relative 1e-5. (Plain scoring of the same pairs
    in batches of other sizes moves these scores of magnitude ~15 by up to ~3e-5 on this CPU.)"""
    c = smol.resolve_cascade("depth=10 compress=4:2@10 > depth=20 compress=4:2,12:2@5 > full@2")
    queries = [smol.encode([(q, d) for d in SMOL_DOCS], 128)
               for q in ("how do I sort a list in python", "read a file")]
    results, stats = run_cascade(smol, queries, c, batch_size=8)
    assert stats.resumed == [False, True, False] and stats.pairs == [20, 10, 4]
    for pairs, r in zip(queries, results):
        for s, stage in enumerate(c.stages):
            idx = np.flatnonzero(r.stage == s)
            ref = smol.score_encoded([pairs[i] for i in idx], plan=stage.plan)[0]
            np.testing.assert_allclose(r.scores[idx], ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- grid, budget
def _row(plan, rr10, flops_rel, seconds, per_query=None, baseline=False):
    return {"plan": plan, "metrics": {"RR@10": rr10, "nDCG@10": rr10}, "flops_rel": flops_rel,
            "seconds": seconds, "queries": 10, "baseline": baseline,
            "per_query": per_query or {str(q): {"RR@10": rr10} for q in range(10)}}


def test_frontier_and_choice_under_a_budget():
    from mrr_jax.evaluation.frontier import Budget, choose, frontier, frontier_table

    rows = [_row("full", 0.50, 1.0, 2.0), _row("depth=12", 0.40, 0.4, 0.8),
            _row("depth=20", 0.38, 0.67, 1.3),  # dominated by depth=12
            _row("depth=12@100 > full@20", 0.49, 0.55, 1.5),
            _row("BM25", 0.45, 0.0, 0.0, baseline=True)]
    assert [r["plan"] for r in frontier(rows)] == ["depth=12", "depth=12@100 > full@20",
                                                   "full"]
    assert choose(rows, "0.5")["plan"] == "depth=12"
    assert choose(rows, "0.6")["plan"] == "depth=12@100 > full@20"
    assert choose(rows, "100ms")["plan"] == "depth=12"  # 80 ms per query
    assert choose(rows, "0.1") is None
    assert Budget.parse(" 40ms") == Budget(40.0, "ms") and str(Budget.parse("0.5")) == "0.5"
    for bad in ("-1", "0", "half", "40 s", "1e9x"):
        with pytest.raises(ValueError, match="expected relative FLOPs"):
            Budget.parse(bad)
    table = frontier_table(rows, "0.6")
    assert "Best under a budget of 0.6 relative FLOPs: `depth=12@100 > full@20`" in table
    assert table.count("| yes |") == 3 and "first stage" in table


def test_grid_scores_cascades_beside_plans(tiny_model, example_data, tmp_path):
    from mrr_jax import Reranker
    from mrr_jax.evaluation import grid

    data = example_data
    rr = Reranker.from_pretrained(tiny_model)
    cascades = ["depth=4@5 > full@2", "depth=4@5 > depth=6 compress=5:2@2"]
    rows = grid.plan_grid(rr, data, "dev", data / "bm25" / "dev.trec", ["full", "depth=4"],
                          top_k=5, out=tmp_path, batch_size=10, max_length=40,
                          query_max_length=8, cascades=cascades, budget="0.9")
    assert [r["plan"] for r in rows] == ["full", "depth=4", *cascades, "BM25"]
    full, d4, c1 = rows[0], rows[1], rows[2]
    assert c1["kind"] == "cascade" and c1["resumed"] == [False, True]
    # FLOPs: all 5 candidates at depth 4, then 2 of them the last 2 layers only
    n_q = full["queries"]
    assert c1["stage_pairs"][0] <= 5 * n_q
    expect = (d4["flops"] * c1["pairs"] + (full["flops"] - d4["flops"]) * 2 / 5 * c1["pairs"])
    assert c1["flops"] * c1["pairs"] == pytest.approx(expect, rel=0.05)
    assert d4["flops_rel"] < c1["flops_rel"] < full["flops_rel"]
    text = (tmp_path / "frontier.md").read_text()
    assert "Best under a budget of 0.9 relative FLOPs" in text
    assert all(c in text for c in cascades)
    assert json.loads((tmp_path / "grid.json").read_text())["rows"][2]["kind"] == "cascade"


def test_grid_cli_cascades_and_budget(tiny_model, example_data, tmp_path, capsys):
    from mrr_jax.evaluation import grid

    d = example_data
    base = ["--model", str(tiny_model), "--data", str(d), "--first-stage",
            str(d / "bm25" / "dev.trec"), "--top-k", "3", "--max-queries", "4",
            "--max-length", "40", "--query-max-length", "8", "--batch-size", "10",
            "--no-progress"]
    assert grid.main([*base, "--plans", "full;depth=4", "--cascades", "depth=4@3 > full@1",
                      "--budget", "0.8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Best under a budget of 0.8 relative FLOPs" in out and "depth=4@3 > full@1" in out
    for flag, value, message in (("--cascades", "depth=4@3 > full@3", "must keep fewer"),
                                 ("--budget", "fast", "expected relative FLOPs"),
                                 ("--cascades", "depth=2@3 > full@1", "below the first exit")):
        assert grid.main([*base, flag, value]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
