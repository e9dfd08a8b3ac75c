"""Hardening of the public API and the jobs against input a user got wrong: ``Reranker.rank``'s
arguments, plans shallower than the first exit, two processes on one output folder, shards of
a small job, missing input files, an evaluation that matches nothing, and plan text in every
command line (each test failed on the code before its fix).

Runs on a tiny random Llama (tests/conftest.py ``tiny_model``) and the small example dataset.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrr_jax import Reranker
from mrr_jax.data import beir, trec
from mrr_jax.evaluation import evaluate, grid
from mrr_jax.scoring_job import job as score

REPO = Path(__file__).resolve().parents[1]
DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "The Seine flows in Paris."]


@pytest.fixture(scope="module")
def rr(tiny_model):
    return Reranker.from_pretrained(tiny_model)  # 6 layers, exits at layers 4..6


@pytest.fixture(scope="module")
def inputs(tiny_model, example_data):
    """Flags every job here shares (the inputs, short lengths, no progress bar)."""
    return ["--model", str(tiny_model), "--corpus", str(example_data / "corpus.jsonl"),
            "--queries", str(example_data / "queries.jsonl"),
            "--run", str(example_data / "bm25" / "dev.trec"), "--top-k", "5",
            "--max-length", "40", "--query-max-length", "8", "--batch-size", "10",
            "--no-progress"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")


# ----------------------------------------------------------------------------- 1. rank


def test_rank_top_k_is_none_or_a_positive_int(rr):
    """``top_k=-1`` used to drop the last document and ``0`` to return ``[]``; a float was a
    raw TypeError from slicing. Larger than the list means all."""
    everything = rr.rank("capital of France", DOCS)
    assert len(everything) == 3 and sorted(r["index"] for r in everything) == [0, 1, 2]
    assert rr.rank("capital of France", DOCS, top_k=10) == everything
    assert rr.rank("capital of France", DOCS, top_k=2) == everything[:2]
    assert rr.rank("capital of France", DOCS, top_k=np.int64(1)) == everything[:1]
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"top_k must be None \(all\) or an int >= 1"):
            rr.rank("capital of France", DOCS, top_k=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="top_k must be None"):
            rr.rank("capital of France", DOCS, top_k=bad)


def test_rank_documents_are_a_sequence_of_strings(rr):
    """A string used to be ranked as its characters; a generator is read into a list."""
    everything = rr.rank("capital of France", DOCS)
    for bad in ("Paris is the capital.", b"Paris"):
        with pytest.raises(TypeError, match="documents must be a sequence of str"):
            rr.rank("capital of France", bad)
    assert rr.rank("capital of France", (d for d in DOCS)) == everything
    with pytest.raises(TypeError, match=r"documents\[1\] is int"):
        rr.rank("capital of France", ["Paris", 3])
    with pytest.raises(ValueError, match=r"documents\[1\] is empty"):
        rr.rank("capital of France", ["Paris", "  "])
    assert rr.rank("capital of France", []) == []


def test_rank_query_is_a_non_empty_string(rr):
    with pytest.raises(TypeError, match="query must be a str"):
        rr.rank(["capital of France"], DOCS)
    with pytest.raises(ValueError, match="query is empty"):
        rr.rank("  ", DOCS)
    with pytest.raises(TypeError, match="exits"):
        rr.rank("capital of France", DOCS, exits=[4, 5])


# ----------------------------------------------------------------------------- 2. exits


def test_a_plan_shallower_than_the_first_exit_is_refused(rr):
    """depth 2 with exits from layer 4 used to score with a wrapped-around head index."""
    pairs = [("capital of France", DOCS[0])]
    with pytest.raises(ValueError, match=r"depth 2 is below the first exit.*layer 4"):
        rr.compute_score(pairs, plan="depth=2")
    with pytest.raises(ValueError, match=r"depth 3 is below the first exit"):
        rr.rank("capital of France", DOCS, plan="depth=3")
    with pytest.raises(ValueError, match=r"exits \[3\] must be .* within 4\.\.5"):
        rr.compute_score(pairs, plan="depth=5", exits=[3])
    with pytest.raises(ValueError, match=r"exits \[\] must be non-empty"):
        rr.compute_score(pairs, exits=[])
    with pytest.raises(TypeError, match=r"exits must be ints, got 4\.5"):
        rr.compute_score(pairs, exits=[4.5])
    assert rr.compute_score(pairs, plan="depth=4").shape == (1,)  # the first exit itself


@pytest.mark.parametrize("start_layer", [0, 7, 9])
def test_a_start_layer_outside_the_model_is_refused(tiny_model, start_layer):
    """The 6-layer model has no layer 0 or 7+ to put its first exit head on: one clear line,
    not a numpy shape error."""
    with pytest.raises(ValueError, match=f"start_layer {start_layer} is outside the model's "
                                         r"6 layers \(the first exit head must be at a layer "
                                         r"1\.\.6\)"):
        Reranker.from_pretrained(tiny_model, start_layer=start_layer, place=False)


def test_jobs_refuse_a_plan_shallower_than_the_first_exit(inputs, tiny_model, example_data,
                                                          tmp_path, capsys):
    out = tmp_path / "job"
    assert score.main([*inputs, "--plan", "full", "--plan", "depth=2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "depth 2 is below the first exit" in err and "Traceback" not in err
    assert not out.exists()
    assert grid.main(["--model", str(tiny_model), "--data", str(example_data), "--first-stage",
                      str(example_data / "bm25" / "dev.trec"), "--plans", "full;depth=3",
                      "--no-progress"]) == 2
    assert "depth 3 is below the first exit" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 3. lock

# The first process: the real command line; its first chunk commits, its second one is held
# (for up to two minutes) so that the process is mid-job when the second one starts.
HELD_CHILD = """
import sys, time
from mrr_jax.scoring_job import cli, run
score_chunk = run.score_chunk
calls = []
def held_chunk(*args, **kwargs):
    result = score_chunk(*args, **kwargs)
    calls.append(1)
    if len(calls) > 1:
        time.sleep(120)
    return result
run.score_chunk = held_chunk
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_second_process_on_the_same_shard_is_refused(inputs, tmp_path):
    """``--resume`` while the first process still runs used to score and merge a second time
    (manifest and summary mixing both); now it is refused, naming the folder and the holder;
    once the holder is dead its lock is stale and a resume takes it over."""
    out = tmp_path / "job"
    argv = [*inputs, "--chunk-pairs", "10", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-c", HELD_CHILD, *argv], env=_env(), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "shards" / "0-of-1" / "manifest.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            if manifest.is_file() and json.loads(manifest.read_text())["done"]:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode()
        second = subprocess.run([sys.executable, "-m", "mrr_jax.score", *argv, "--resume"],
                                env=_env(), cwd=REPO, capture_output=True, text=True,
                                timeout=180)
        assert second.returncode == 2, second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, second.stderr
        assert str(out / "shards" / "0-of-1") in errors[0] and str(first.pid) in errors[0]
        assert "Traceback" not in second.stderr
        m = json.loads(manifest.read_text())
        assert [s["pid"] for s in m["sessions"]] == [first.pid]  # nothing written by the second
        assert not (out / "run.trec").exists() and first.poll() is None
    finally:
        first.kill()
        first.wait()
    assert score.main([*argv, "--resume"]) == 0  # the dead holder's lock is taken over
    m = json.loads(manifest.read_text())
    assert m["complete"] and len(m["sessions"]) == 2 and (out / "run.trec").is_file()


def test_the_shard_lock_itself(tmp_path):
    from mrr_jax.scoring_job.lock import shard_lock

    folder = tmp_path / "shards" / "0-of-1"
    folder.mkdir(parents=True)
    with shard_lock(folder):
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from mrr_jax.scoring_job.lock import shard_lock\n"
             "try:\n    shard_lock(Path(sys.argv[1])).__enter__()\n"
             "except Exception as e:\n    print(e)", str(folder)],
            env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert f"process {os.getpid()}" in probe.stdout and str(folder) in probe.stdout
    with shard_lock(folder):  # released on exit: taken again
        pass


# ----------------------------------------------------------------------------- 7. shards


def _manifest(out: Path, i: int, n: int) -> dict:
    return json.loads((out / "shards" / f"{i}-of-{n}" / "manifest.json").read_text())


def _assert_close_runs(a: Path, b: Path) -> None:
    ra, rb = trec.load_run(a), trec.load_run(b)
    assert ra.keys() == rb.keys()
    for q in ra:
        assert ra[q].keys() == rb[q].keys()
        np.testing.assert_allclose([ra[q][d] for d in ra[q]], [rb[q][d] for d in ra[q]],
                                   atol=1e-4)


def test_shards_of_a_small_job_are_balanced_by_pairs(inputs, tmp_path, capsys):
    """A job smaller than one chunk (--chunk-pairs 256) used to go to shard 0 alone."""
    argv = [*inputs, "--max-queries", "6"]
    assert score.main([*argv, "--out", str(tmp_path / "one")]) == 0
    two = tmp_path / "two"
    for i in (0, 1):
        assert score.main([*argv, "--shard", f"{i}/2", "--out", str(two)]) == 0
    m = [_manifest(two, i, 2) for i in (0, 1)]
    total = _manifest(tmp_path / "one", 0, 1)["pairs"]
    assert m[0]["pairs"] + m[1]["pairs"] == total
    assert m[0]["pairs"] and m[1]["pairs"] and abs(m[0]["pairs"] - m[1]["pairs"]) <= 5
    _assert_close_runs(two / "run.trec", tmp_path / "one" / "run.trec")
    capsys.readouterr()
    # More shards than queries: the empty shard says so, and the job still merges.
    three = tmp_path / "three"
    small = [*inputs, "--max-queries", "2"]
    assert score.main([*small, "--shard", "2/3", "--out", str(three)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"shard 2/3: empty: .*2 queries for 3 shards", err), err
    for i in (0, 1):
        assert score.main([*small, "--shard", f"{i}/3", "--out", str(three)]) == 0
    assert len(trec.load_run(three / "run.trec")) == 2


def test_a_shard_cut_differently_is_refused(inputs, tmp_path, capsys):
    """A folder whose shards were cut by another rule (an older version) is refused, not
    mixed: its manifest's chunks are not those this version gives the shard."""
    out = tmp_path / "job"
    argv = [*inputs, "--max-queries", "8", "--chunk-pairs", "10", "--out", str(out)]
    assert score.main([*argv, "--shard", "0/2"]) == 0
    path = out / "shards" / "0-of-2" / "manifest.json"
    m = json.loads(path.read_text())
    m["assigned"] = m["assigned"][:-1]  # as the old rule could have cut it
    path.write_text(json.dumps(m))
    capsys.readouterr()
    for extra in (["--shard", "1/2"], ["--shard", "0/2", "--resume"]):
        assert score.main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert "cut into chunks differently" in err and "0-of-2" in err, err


# ----------------------------------------------------------------------------- 5. missing


def test_missing_job_inputs_name_the_flag_and_the_command(monkeypatch, tmp_path, capsys):
    """The example config before the data is built used to print bare errno text."""
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "score_stdlib.py") + ":dev"
    assert score.main(["--config", config, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert "--corpus" in err and "data/stdlib/corpus.jsonl" in err, err
    assert "python -m mrr_jax.data.example data/stdlib" in err and "Errno" not in err
    (tmp_path / "data" / "stdlib").mkdir(parents=True)
    (tmp_path / "data" / "stdlib" / "corpus.jsonl").write_text("")
    (tmp_path / "data" / "stdlib" / "queries.jsonl").write_text("")
    assert score.main(["--config", config, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert "--run" in err and "data/stdlib/bm25/dev.trec" in err and "Errno" not in err
    assert "python -m mrr_jax.data.example data/stdlib" in err


def test_a_missing_packaged_model_says_how_to_make_it(inputs, tmp_path, capsys):
    argv = list(inputs)
    argv[1] = str(tmp_path / "SmolLM2-135M-Instruct")
    assert score.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "make model" in err and "python -m mrr_jax.convert --smollm2" \
        in err, err
    with pytest.raises(FileNotFoundError, match="make model"):
        Reranker.from_pretrained(tmp_path / "SmolLM2-135M-Instruct")


def test_missing_grid_and_evaluate_inputs_name_the_flag(tiny_model, example_data, tmp_path,
                                                        capsys):
    nodata = tmp_path / "stdlib"
    assert grid.main(["--model", str(tiny_model), "--data", str(nodata), "--first-stage",
                      str(nodata / "bm25" / "dev.trec"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and f"python -m mrr_jax.data.example {nodata}" in err
    assert "Errno" not in err and "Traceback" not in err
    assert grid.main(["--model", str(tiny_model), "--data", str(example_data), "--first-stage",
                      str(tmp_path / "first.trec"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--first-stage" in err and str(tmp_path / "first.trec") in err and "Errno" not in err
    qrels = example_data / "qrels" / "dev.tsv"
    assert evaluate.main(["--run", str(tmp_path / "run.trec"), "--qrels", str(qrels)]) == 2
    err = capsys.readouterr().err
    assert "--run" in err and str(tmp_path / "run.trec") in err and "Errno" not in err
    assert evaluate.main(["--run", str(example_data / "bm25" / "dev.trec"), "--qrels",
                          str(nodata / "qrels" / "dev.tsv")]) == 2
    err = capsys.readouterr().err
    assert "--qrels" in err and f"python -m mrr_jax.data.example {nodata}" in err


# ----------------------------------------------------------------------------- 6. evaluate


def test_a_run_sharing_no_query_with_the_qrels_is_an_error(tmp_path, capsys):
    """It used to exit 0 with all zeros."""
    trec.write_run(tmp_path / "run.trec", {"x1": {"d1": 1.0}, "x2": {"d2": 1.0}})
    beir.write_qrels(tmp_path / "qrels.tsv", {"q1": {"d1": 1}, "q2": {"d2": 1},
                                              "q3": {"d2": 1}})
    argv = ["--run", str(tmp_path / "run.trec"), "--qrels", str(tmp_path / "qrels.tsv")]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "shares no query with the qrels" in err and str(tmp_path / "run.trec") in err
    assert "2 queries" in err and "'x1'" in err and "3 evaluated queries" in err and "'q1'" in err


def test_a_qrels_file_with_only_a_header_is_named(tmp_path, capsys):
    trec.write_run(tmp_path / "run.trec", {"q1": {"d1": 1.0}})
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert evaluate.main(["--run", str(tmp_path / "run.trec"), "--qrels",
                          str(tmp_path / "qrels.tsv")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "qrels.tsv") in err and "no judgement" in err, err


# ----------------------------------------------------------------------------- 8. plan text


def test_no_cli_keeps_its_own_full_rule():
    """``Plan.parse`` reads "full" and "": no module compares plan text with "full" itself."""
    rule = re.compile(r"""[=!]=\s*["']full["']|["']full["']\s*[=!]=|in\s*\(\s*["']full["']""",
                      re.IGNORECASE)
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "mrr_jax").rglob("*.py"))
                 if p.name != "plan.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if rule.search(line)]
    assert not offenders


def test_bench_reads_full_and_empty_plan_text_through_plan_parse(tmp_path):
    from mrr_jax.experiments import bench

    args = bench.parse_args(["--model", str(tmp_path), "--plans", "", "--torch", "none"])
    assert args.plans == [""]  # the full model, as Plan.parse reads it
    assert bench.parse_args(["--model", str(tmp_path), "--plans", " FULL ;depth=3;"]
                            ).plans == ["FULL", "depth=3"]
    for arg in ("FULL", "", "depth=30"):  # every spelling of the full model is checked
        results = {"plans": [{"plan": "depth=30 mode=merge", "plan_arg": arg, "full": True,
                              "scores": np.zeros(3)}],
                   "torch": {"eager": {"scores": np.ones(3)}}}
        bench.check_parity(results, "float32")
        assert "parity_failed" in results, arg


def test_grid_reads_an_empty_plan_as_the_full_model(tiny_model, example_data, tmp_path):
    assert grid.main(["--model", str(tiny_model), "--data", str(example_data), "--first-stage",
                      str(example_data / "bm25" / "dev.trec"), "--top-k", "3", "--plans", "",
                      "--max-queries", "2", "--max-length", "40", "--query-max-length", "8",
                      "--batch-size", "10", "--no-progress", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "grid.json").read_text())["rows"]
    assert [r.get("plan_resolved") for r in rows] == ["depth=6 mode=merge", None]
