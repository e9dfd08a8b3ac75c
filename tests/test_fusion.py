"""First-stage fusion: the formula (:mod:`mrr_jax.data.fusion`), ``Reranker.rank(fuse=...)``,
the scoring job's ``--fuse`` (fused and model-alone runs, shards, resume) and the weight chooser
``python -m mrr_jax.fusion`` on a hand-made run and qrels.

The model is the tiny random Llama of tests/conftest.py; jobs use short lengths, as
tests/test_score_job.py does, so that they compile only a few programs.
"""

import json
import math
import shutil

import numpy as np
import pytest

from mrr_jax import Reranker
from mrr_jax.data import trec
from mrr_jax.data.fusion import fuse, fuse_run, normalise
from mrr_jax.evaluation import fusion as chooser
from mrr_jax.fusion import main as fusion_main
from mrr_jax.scoring_job import job as score

DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "The Seine flows in Paris.",
        "Lyon is a city in France."]


# ----------------------------------------------------------------------------- the formula


def test_minmax_by_hand():
    model = {"a": 3.0, "b": 1.0, "c": 2.0}
    first = {"a": 10.0, "b": 30.0, "c": 20.0}
    assert normalise(model) == {"a": 1.0, "b": 0.0, "c": 0.5}
    got = fuse(model, first, 0.25)
    # model: a 1, b 0, c .5; first: a 0, b 1, c .5
    assert got == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.5})
    assert list(got) == ["a", "b", "c"]  # the model's key order


def test_zscore_by_hand():
    model = {"a": 1.0, "b": 2.0, "c": 3.0}
    first = {"a": 5.0, "b": 5.0, "c": 8.0}
    std_m = math.sqrt(2 / 3)  # population std of 1, 2, 3
    mf, std_f = 6.0, math.sqrt((1 + 1 + 4) / 3)
    got = fuse(model, first, 0.5, norm="zscore")
    for d in "abc":
        want = 0.5 * (model[d] - 2.0) / std_m + 0.5 * (first[d] - mf) / std_f
        assert got[d] == pytest.approx(want)
    assert normalise(model, "zscore")["b"] == 0.0


def test_constant_lists():
    assert normalise({"a": 2.0, "b": 2.0}) == {"a": 0.5, "b": 0.5}
    assert normalise({"a": 7.0}) == {"a": 0.5}
    assert normalise({"a": 2.0, "b": 2.0}, "zscore") == {"a": 0.0, "b": 0.0}
    assert normalise({}) == {}
    # a constant first stage does not change the model's order
    got = fuse({"a": 1.0, "b": 3.0}, {"a": 4.0, "b": 4.0}, 0.5)
    assert got == {"a": 0.25, "b": 0.75}


def test_missing_candidates_get_the_first_stage_minimum():
    model = {"a": 1.0, "b": 2.0, "c": 3.0}
    first = {"a": 5.0, "b": 9.0, "other": 100.0}  # "other" is not a candidate: ignored
    got = fuse(model, first, 1.0)
    assert got == {"a": 0.0, "b": 1.0, "c": 0.0}
    z = fuse(model, first, 1.0, "zscore")
    assert z["c"] == z["a"] == -1.0
    assert fuse(model, {}, 0.5) == {"a": 0.0, "b": 0.25, "c": 0.5}  # no first stage at all


def test_weight_0_is_the_model_and_1_the_first_stage():
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(20)]
    model = dict(zip(ids, rng.normal(size=20).tolist()))
    first = dict(zip(ids, rng.normal(size=20).tolist()))
    order = [d for d, _ in trec.ranking(model)]
    assert [d for d, _ in trec.ranking(fuse(model, first, 0.0))] == order
    assert [d for d, _ in trec.ranking(fuse(model, first, 1.0))] == \
        [d for d, _ in trec.ranking(first)]
    for norm in ("minmax", "zscore"):
        assert [d for d, _ in trec.ranking(fuse(model, first, 0, norm))] == order


def test_fuse_run():
    model = {"q1": {"a": 1.0, "b": 2.0}, "q2": {"x": 0.0, "y": 1.0}}
    first = {"q1": {"a": 9.0, "b": 1.0}}
    got = fuse_run(model, first, 0.5)
    assert got == {"q1": fuse(model["q1"], first["q1"], 0.5),
                   "q2": {"x": 0.0, "y": 0.5}}
    assert fuse_run({}, first, 0.5) == {}


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_bad_weight(weight):
    with pytest.raises(ValueError, match=r"fusion weight must be a number in \[0, 1\]"):
        fuse({"a": 1.0}, {"a": 1.0}, weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fusion norm must be one of minmax, zscore"):
        fuse({"a": 1.0}, {}, 0.5, norm="rank")
    with pytest.raises(ValueError, match="model score of 'a' must be a finite number"):
        fuse({"a": float("inf")}, {}, 0.5)
    with pytest.raises(ValueError, match="first-stage score of 'a' must be a finite"):
        fuse({"a": 1.0}, {"a": "high"}, 0.5)
    with pytest.raises(ValueError, match="must be a mapping"):
        fuse([1.0], {}, 0.5)
    with pytest.raises(ValueError, match="fusion weight"):
        fuse_run({}, {}, 2)
    with pytest.raises(ValueError, match="runs as mappings"):
        fuse_run([], {}, 0.5)
    with pytest.raises(ValueError) as e:  # messages are one line
        fuse({"a": 1.0}, {}, 3)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- rank


@pytest.fixture(scope="module")
def rr(tiny_model):
    return Reranker.from_pretrained(tiny_model)


def test_rank_with_fuse(rr):
    q = "capital of France"
    plain = rr.rank(q, DOCS)
    assert all("fused_score" not in r for r in plain)
    model = {str(r["index"]): r["score"] for r in plain}
    first = [4.0, 1.0, 3.0, 2.0]
    for w in (0.0, 0.3, 1.0):
        ranked = rr.rank(q, DOCS, first_stage_scores=first, fuse=w)
        want = fuse(model, {str(i): s for i, s in enumerate(first)}, w)
        assert [r["index"] for r in ranked] == sorted(
            range(len(DOCS)), key=lambda i: (-want[str(i)], i))
        for r in ranked:
            assert r["score"] == model[str(r["index"])]  # the model's own score, kept
            assert r["fused_score"] == pytest.approx(want[str(r["index"])])
            assert r["document"] == DOCS[r["index"]]
    assert [r["index"] for r in rr.rank(q, DOCS, first_stage_scores=first, fuse=0)] == \
        [r["index"] for r in plain]
    assert [r["index"] for r in rr.rank(q, DOCS, first_stage_scores=first, fuse=1)] == \
        [0, 2, 3, 1]
    top = rr.rank(q, DOCS, first_stage_scores=np.asarray(first), fuse=1, top_k=2)
    assert [r["index"] for r in top] == [0, 2]
    z = rr.rank(q, DOCS, first_stage_scores=first, fuse=1, fuse_norm="zscore")
    assert [r["index"] for r in z] == [0, 2, 3, 1]
    assert rr.rank(q, [], first_stage_scores=[], fuse=0.5) == []


def test_rank_fuse_arguments(rr):
    q = "capital of France"
    first = [4.0, 1.0, 3.0, 2.0]
    cases = [
        (dict(fuse=0.5), "needs first_stage_scores"),
        (dict(first_stage_scores=first), "used only with fuse"),
        (dict(first_stage_scores=first[:3], fuse=0.5), "has 3 scores for 4 documents"),
        (dict(first_stage_scores=first, fuse=1.5), r"weight must be a number in \[0, 1\]"),
        (dict(first_stage_scores=first, fuse=True), r"weight must be a number"),
        (dict(first_stage_scores=[1, 2, float("nan"), 3], fuse=0.5),
         r"first_stage_scores\[2\] must be a finite number"),
        (dict(first_stage_scores="1234", fuse=0.5), "must be a sequence of numbers"),
        (dict(first_stage_scores=first, fuse=0.5, fuse_norm="rank"), "norm must be one of"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            rr.rank(q, DOCS, **kwargs)


# ----------------------------------------------------------------------------- scoring job


@pytest.fixture(scope="module")
def plain_job(tmp_path_factory, tiny_job_args):
    out = tmp_path_factory.mktemp("plain") / "job"
    assert score.main([*tiny_job_args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def fused_job(tmp_path_factory, tiny_job_args):
    out = tmp_path_factory.mktemp("fused") / "job"
    assert score.main([*tiny_job_args, "--fuse", "0.3", "--out", str(out)]) == 0
    return out


def test_job_fused_run(plain_job, fused_job, example_data):
    model = trec.load_run(fused_job / "run.model.trec")
    first = trec.top_k(trec.load_run(example_data / "bm25" / "dev.trec"), 5)
    assert trec.load_run(fused_job / "run.trec") == fuse_run(model, first, 0.3)
    # the model-alone run is exactly the run of the job without --fuse
    assert (fused_job / "run.model.trec").read_bytes() == \
        (plain_job / "run.trec").read_bytes()
    assert not (plain_job / "run.model.trec").exists()
    manifest = json.loads((fused_job / "shards" / "0-of-1" / "manifest.json").read_text())
    assert manifest["fuse"] == manifest["config"]["fuse"] == {"weight": 0.3, "norm": "minmax"}
    plain = json.loads((plain_job / "shards" / "0-of-1" / "manifest.json").read_text())
    assert "fuse" not in plain and "fuse" not in plain["config"]
    summary = json.loads((fused_job / "summary.json").read_text())
    assert summary["fuse"] == {"weight": 0.3, "norm": "minmax"}
    assert summary["plans"][0]["files"] == ["run.trec", "run.model.trec"]


def test_job_fused_two_shards_equal_one(fused_job, tiny_job_args, tmp_path):
    out = tmp_path / "job"
    argv = [*tiny_job_args, "--fuse", "0.3", "--out", str(out)]
    assert score.main([*argv, "--shard", "0/2"]) == 0
    assert not (out / "run.trec").exists()
    assert score.main([*argv, "--shard", "1/2"]) == 0
    for name in ("run.trec", "run.model.trec"):
        assert (out / name).read_bytes() == (fused_job / name).read_bytes(), name
    (out / "run.trec").unlink()
    assert score.main(["--merge-only", "--out", str(out)]) == 0  # fuse read from manifests
    assert (out / "run.trec").read_bytes() == (fused_job / "run.trec").read_bytes()


def test_job_resume_with_other_fuse_is_refused(fused_job, tiny_job_args, tmp_path, capsys):
    out = tmp_path / "job"
    shutil.copytree(fused_job, out)
    for extra in (["--fuse", "0.5"], [], ["--fuse", "0.3", "--fuse-norm", "zscore"]):
        assert score.main([*tiny_job_args, *extra, "--resume", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "refusing to resume" in err and "fuse" in err
    assert score.main([*tiny_job_args, "--fuse", "0.3", "--resume", "--out", str(out)]) == 0


def test_job_fused_several_plans_and_a_changed_first_stage(tiny_job_args, example_data, tmp_path,
                                                          capsys):
    bm25 = tmp_path / "bm25.trec"
    shutil.copy(example_data / "bm25" / "dev.trec", bm25)
    argv = [a if a != str(example_data / "bm25" / "dev.trec") else str(bm25) for a in tiny_job_args]
    out = tmp_path / "job"
    assert score.main([*argv, "--plan", "full", "--plan", "depth=5", "--fuse", "0.5",
                       "--fuse-norm", "zscore", "--out", str(out)]) == 0
    first = trec.top_k(trec.load_run(bm25), 5)
    for plan in ("depth-6_mode-merge", "depth-5_mode-merge"):
        model = trec.load_run(out / f"run.{plan}.trec")
        assert trec.load_run(out / f"run.{plan}.fused.trec") == \
            fuse_run(model, first, 0.5, "zscore")
    assert (out / "run.trec").read_bytes() == \
        (out / "run.depth-6_mode-merge.fused.trec").read_bytes()
    assert (out / "run.model.trec").read_bytes() == \
        (out / "run.depth-6_mode-merge.trec").read_bytes()
    capsys.readouterr()
    bm25.write_text(bm25.read_text().replace(" Q0 ", " Q0  ", 1))  # another file now
    assert score.main(["--merge-only", "--out", str(out)]) == 2
    assert "first-stage run is missing or changed" in capsys.readouterr().err


def test_job_fuse_errors(tiny_job_args, example_data, tmp_path, capsys):
    out = str(tmp_path / "o")
    cases = [(["--fuse", "1.5"], r"weight must be a number in [0, 1]"),
             (["--fuse-norm", "zscore"], "--fuse-norm is used only with --fuse")]
    for extra, message in cases:
        assert score.main([*tiny_job_args, *extra, "--out", out]) == 2
        assert message in capsys.readouterr().err
    argv = list(tiny_job_args)
    for flag in ("--queries", "--run"):
        i = argv.index(flag)
        del argv[i:i + 2]
    assert score.main([*argv, "--candidates", str(tmp_path / "c.jsonl"), "--fuse", "0.5",
                       "--out", out]) == 2
    assert "cannot be used with --candidates" in capsys.readouterr().err
    with pytest.raises(score.JobError, match="wrong type"):
        score.JobConfig.from_dict({"fuse": "0.5"})


def test_chooser_on_the_job_outputs(fused_job, example_data, tmp_path, capsys):
    """The weight chooser on the job's model-alone run and the dev qrels, end to end."""
    d = example_data
    out = tmp_path / "fusion.json"
    assert fusion_main(["--run", str(fused_job / "run.model.trec"), "--first-stage",
                        str(d / "bm25" / "dev.trec"), "--qrels", str(d / "qrels" / "dev.tsv"),
                        "--top-k", "5", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["weight"] for r in doc["weights"]] == [i / 10 for i in range(11)]
    assert doc["queries"] >= 1 and "chosen weight" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the chooser

# q1: the model is right (a), the first stage prefers b; q2: the model is wrong, the first
# stage right (z). Fused with minmax: q1 keeps a first while w < 5/7, q2 puts z first once
# w > 1/2, so 0.6 and 0.7 get both right (RR 1) and the smaller, 0.6, is chosen.
MODEL = {"1": {"a": 3.0, "b": 2.0, "c": 1.0}, "2": {"x": 3.0, "y": 2.0, "z": 1.0},
         "3": {"m": 1.0, "n": 0.0}}
FIRST = {"1": {"a": 8.0, "b": 10.0, "c": 0.0}, "2": {"x": 0.0, "y": 0.0, "z": 10.0},
         "3": {"m": 1.0, "n": 0.0}, "4": {"p": 1.0}}
QRELS = {"1": {"a": 1}, "2": {"z": 1}, "9": {"q": 1}}  # query 9 is not in the runs


@pytest.fixture
def hand_made(tmp_path):
    trec.write_run(tmp_path / "model.trec", MODEL)
    trec.write_run(tmp_path / "bm25.trec", FIRST)
    trec.write_qrels(tmp_path / "dev.qrels", QRELS)
    return tmp_path


def _args(d, *extra):
    return ["--run", str(d / "model.trec"), "--first-stage", str(d / "bm25.trec"),
            "--qrels", str(d / "dev.qrels"), *extra]


def test_chooser_picks_the_best_weight(hand_made, capsys):
    out = hand_made / "fusion.json"
    assert fusion_main(_args(hand_made, "--out", str(out))) == 0
    text = capsys.readouterr().out
    assert "chosen weight: 0.6" in text and "MRR@10" in text and "nDCG@10" in text
    doc = json.loads(out.read_text())
    means = {r["weight"]: r["metrics"]["MRR@10"] for r in doc["weights"]}
    assert means[0.0] == pytest.approx((1 + 1 / 3) / 2)  # the model alone
    assert means[1.0] == pytest.approx((1 / 2 + 1) / 2)  # the first stage
    assert means[0.6] == means[0.7] == 1.0 and means[0.5] < 1.0
    assert doc["chosen"] == {"weight": 0.6, "MRR@10": 1.0} and doc["queries"] == 2
    assert doc["vs_model"]["change"] == pytest.approx(1 - (1 + 1 / 3) / 2)
    assert doc["vs_model"]["up"] == 1 and doc["vs_model"]["same"] == 1
    assert doc["vs_first_stage"]["up"] == 1
    lo, hi = doc["vs_model"]["ci95"]
    assert lo <= doc["vs_model"]["change"] <= hi


def test_chooser_weights_metric_and_ties(hand_made, capsys):
    assert fusion_main(_args(hand_made, "--weights", "0.3,0.65")) == 0
    text = capsys.readouterr().out
    assert "chosen weight: 0.65" in text
    rows = [line.split()[0] for line in text.splitlines()[2:6]]
    assert rows == ["0", "0.3", "0.65", "1"]  # 0 and 1 are always there
    # every weight ties on R@100 (all candidates are in every run): the smallest wins
    result = chooser.sweep(MODEL, FIRST, QRELS, [0.5], metric="R@100")
    assert result["metrics"] == ["MRR@10", "nDCG@10", "R@100"]
    assert result["chosen"]["weight"] == 0.0
    # --top-k 1: only the first stage's best is a candidate, fusion changes nothing
    top1 = chooser.sweep(MODEL, FIRST, QRELS, [0.5], top_k=1)
    assert {r["metrics"]["MRR@10"] for r in top1["weights"]} == {0.5}


def test_chooser_help_says_dev(capsys):
    with pytest.raises(SystemExit) as e:
        fusion_main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "MUST be a dev split, never test" in text and "DEV qrels (never test)" in text


def test_chooser_errors(hand_made, tmp_path, capsys):
    trec.write_qrels(tmp_path / "other.qrels", {"77": {"a": 1}})
    cases = [
        (_args(hand_made)[:3] + [str(tmp_path / "nope.trec"), *_args(hand_made)[4:]],
         "--first-stage"),
        (_args(hand_made)[:5] + [str(tmp_path / "other.qrels")], "shares no query"),
        (_args(hand_made, "--weights", "0.5,2"), "fusion weight must be a number"),
        (_args(hand_made, "--weights", "0.5,x"), "'x' is not a number"),
        (_args(hand_made, "--metric", "Bogus@3"), "unknown metric"),
    ]
    for argv, message in cases:
        assert fusion_main(argv) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
