"""The offline scoring job (``python -m mrr_jax.score``) on a tiny random Llama and a small
example dataset: shards, kill -9 and resume, jax.distributed, several plans in one pass, errors.

Lengths are cut short (``--max-length 40 --query-max-length 8``) so that nearly every batch has
the same shape and the job compiles only a few programs.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrr_jax import Plan, Reranker
from mrr_jax.data import beir, trec
from mrr_jax.inputs.batching import batch_bucket, padded_width, plan_batches
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.scoring_job import job as score
from mrr_jax.scoring_job.job import group_plans

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(example_data):
    return example_data


@pytest.fixture(scope="module")
def common(tiny_model, data):
    return ["--model", str(tiny_model), "--corpus", str(data / "corpus.jsonl"),
            "--queries", str(data / "queries.jsonl"), "--run", str(data / "bm25" / "dev.trec"),
            "--top-k", "5", "--max-length", "40", "--query-max-length", "8",
            "--batch-size", "10", "--chunk-pairs", "10", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model, data):
    """The uninterrupted one-process job, its settings given through --config (and one flag
    overriding the file)."""
    out = tmp_path_factory.mktemp("ref") / "job"
    cfg = tmp_path_factory.mktemp("cfg") / "job.json"
    cfg.write_text(json.dumps({
        "model": str(tiny_model), "corpus": str(data / "corpus.jsonl"),
        "queries": str(data / "queries.jsonl"), "run": str(data / "bm25" / "dev.trec"),
        "top_k": 3, "max-length": 40, "query_max_length": 8, "batch_size": 10,
        "chunk_pairs": 10, "progress": False, "plan": "full"}))
    assert score.main(["--config", str(cfg), "--top-k", "5", "--out", str(out)]) == 0
    return out


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env.update(extra)
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mrr_jax.score", *args]


def test_reference_run_is_complete(reference, data):
    run = trec.load_run(reference / "run.trec")
    first = trec.top_k(trec.load_run(data / "bm25" / "dev.trec"), 5)
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in first.items()}
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["pairs"] == sum(len(d) for d in first.values())
    assert summary["queries"] == len(first)
    assert summary["truncated"] > 0 and summary["pairs_per_second"] > 0
    assert summary["config"]["top_k"] == 5  # the flag beat the config file


def test_two_shards_equal_one(reference, common, tmp_path):
    out = tmp_path / "job"
    assert score.main([*common, "--shard", "0/2", "--out", str(out)]) == 0
    assert not (out / "run.trec").exists()  # shard 1 is not done yet
    assert score.main([*common, "--merge-only", "--out", str(out)]) == 2  # cannot merge yet
    assert score.main([*common, "--shard", "1/2", "--out", str(out)]) == 0
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()
    (out / "run.trec").unlink()
    assert score.main(["--merge-only", "--out", str(out)]) == 0
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()
    m0 = json.loads((out / "shards" / "0-of-2" / "manifest.json").read_text())
    m1 = json.loads((out / "shards" / "1-of-2" / "manifest.json").read_text())
    assert not set(m0["assigned"]) & set(m1["assigned"]) and m0["assigned"] and m1["assigned"]


# The killed child: the real command line, with each chunk's scoring slowed down (after the
# scores, before the chunk file and the manifest are written) so that the kill lands mid-job.
SLOW_CHILD = """
import sys, time
from mrr_jax.scoring_job import cli, run
score_chunk = run.score_chunk
def slow_chunk(*args, **kwargs):
    result = score_chunk(*args, **kwargs)
    time.sleep(0.3)
    return result
run.score_chunk = slow_chunk
sys.exit(cli.main(sys.argv[1:]))
"""


def kill_mid_job(args: list[str], out: Path) -> dict:
    """Runs the job (``args`` + ``--out out``) in a child, kills it with SIGKILL once its first
    chunk is committed, and returns the manifest it left."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *args, "--out", str(out)],
                            env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    manifest = out / "shards" / "0-of-1" / "manifest.json"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text())["done"]:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return json.loads(manifest.read_text())


def test_kill_and_resume(reference, common, tmp_path):
    """kill -9 mid-job, then --resume: finished chunks are kept, the run is byte-identical."""
    out = tmp_path / "job"
    before = kill_mid_job(common, out)
    manifest = out / "shards" / "0-of-1" / "manifest.json"
    assert 1 <= len(before["done"]) < len(before["assigned"]) and not before["complete"]
    assert not (out / "run.trec").exists()
    assert score.main([*common, "--out", str(out)]) == 2  # not without --resume
    assert score.main([*common, "--resume", "--out", str(out)]) == 0
    after = json.loads(manifest.read_text())
    assert sorted(map(int, after["done"])) == after["assigned"] and after["complete"]
    for k, info in before["done"].items():  # finished chunks were not scored again
        assert after["done"][k] == info
    assert len(after["sessions"]) == 2
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def test_jax_distributed_two_processes(reference, common, tmp_path):
    out = tmp_path / "job"
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(
        _cmd(*common, "--out", str(out)), cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=_env(MRR_JAX_DISTRIBUTED="1", JAX_NUM_PROCESSES="2",
                                          JAX_PROCESS_ID=str(i),
                                          JAX_COORDINATOR_ADDRESS=f"localhost:{port}"))
        for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert sorted(d.name for d in (out / "shards").iterdir()) == ["0-of-2", "1-of-2"]
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def test_several_plans_one_pass(reference, common, tiny_model, data, tmp_path):
    out = tmp_path / "job"
    plans = ["full", "depth=4", "depth=5", "depth=5 compress=2:2"]
    argv = [*common, "--out", str(out)]
    for p in plans:
        argv += ["--plan", p]
    assert score.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["exits"] for p in summary["passes"]] == [[4, 5, 6], [5]]
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()
    assert (out / "run.trec").read_bytes() == (out / "run.depth-6_mode-merge.trec").read_bytes()
    rr = Reranker.from_pretrained(tiny_model)
    queries = beir.load_queries(data / "queries.jsonl")
    corpus = beir.load_corpus(data / "corpus.jsonl")
    run = trec.load_run(data / "bm25" / "dev.trec")
    for p in plans:
        plan = score.parse_plan(p).resolve(6)
        alone = score.rerank(rr, queries, corpus, run, [plan], 5, batch_size=10,
                             max_length=40, query_max_length=8)[str(plan)]
        joint = trec.load_run(out / f"run.{score.plan_filename(plan)}.trec")
        assert joint.keys() == alone.keys()
        for qid, docs in alone.items():
            assert joint[qid].keys() == docs.keys()
            np.testing.assert_allclose([joint[qid][d] for d in docs], list(docs.values()),
                                       atol=1e-5, err_msg=p)


def test_unknown_doc_id(common, data, tmp_path, capsys):
    lines = (data / "bm25" / "dev.trec").read_text().splitlines()
    qid, q0, _, rank, sc, tag = lines[1].split()
    lines[1] = " ".join([qid, q0, "no.such.doc", rank, sc, tag])
    bad = tmp_path / "bad.trec"
    bad.write_text("\n".join(lines) + "\n")
    argv = [a if a != str(data / "bm25" / "dev.trec") else str(bad) for a in common]
    assert score.main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no.such.doc" in err and "line 2" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    assert score.main([*argv, "--on-missing", "warn", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["skipped_entries"] == 1


def test_resume_with_other_config_is_refused(reference, common, tmp_path, capsys):
    out = tmp_path / "job"
    shutil.copytree(reference, out)
    assert score.main([*common, "--top-k", "4", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "top_k" in err
    assert score.main([*common, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert score.main([*common, "--resume", "--out", str(out)]) == 0  # same config: fine
    assert (out / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


def test_malformed_corpus_is_a_clean_error(common, data, tmp_path, capsys):
    text = (data / "corpus.jsonl").read_text().splitlines()
    text[2] = text[2][:-5]
    bad = tmp_path / "corpus.jsonl"
    bad.write_text("\n".join(text) + "\n")
    argv = [a if a != str(data / "corpus.jsonl") else str(bad) for a in common]
    assert score.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl, line 3" in err and "Traceback" not in err


def test_cli_errors_without_traceback(tmp_path):
    proc = subprocess.run(_cmd("--out", str(tmp_path / "o"), "--model", str(tmp_path / "nope"),
                               "--candidates", str(tmp_path / "c.jsonl")),
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_group_plans_shares_prefixes():
    plans = [Plan.parse(s).resolve(30) for s in (
        "depth=12", "compress=8:2", "depth=20", "depth=10 compress=8:2", "compress=8:2,16:2",
        "depth=12 compress=8:2 mode=select", "depth=30")]
    passes = group_plans(plans)
    served = {j: (str(p.plan), k) for p in passes for j, k in p.targets}
    assert served[0] == served[2][:1] + (12,) == ("depth=30 mode=merge", 12)
    assert served[6] == ("depth=30 mode=merge", 30)
    # depth 10 with 8:2 is the same sub-model as either compressed pass cut at 10
    assert served[3][0] in ("depth=30 compress=8:2 mode=merge",
                            "depth=30 compress=8:2,16:2 mode=merge")
    assert served[5][0] != served[1][0]  # other mode: its own pass
    assert len(passes) == 4


def test_token_budget_batches():
    def pair(q: int, p: int) -> EncodedPair:
        return EncodedPair(tuple(range(q)), tuple(range(p)), (1, 2, 3))

    pairs = [pair(5 + i % 7, 20 + 13 * i % 150) for i in range(60)]
    batches = plan_batches(pairs, batch_size=16, tokens_per_batch=1024)
    assert sorted(i for b in batches for i in b) == list(range(60))
    for b in batches:
        rows = [pairs[i] for i in b]
        assert len(b) <= 16
        assert len(b) == 1 or batch_bucket(len(b), 16) * padded_width(rows) <= 1024
    assert batches == plan_batches(pairs, batch_size=16, tokens_per_batch=1024)
    lengths = [len(pairs[i]) for b in batches for i in b]
    assert lengths == sorted(lengths, reverse=True)
    assert [len(b) for b in plan_batches(pairs, 16)] == [16, 16, 16, 12]


def test_plan_filenames_are_distinct():
    names = {score.plan_filename(Plan.parse(s).resolve(30)) for s in (
        "depth=12", "depth=12 compress=4:2", "depth=12 compress=4:2,8:2",
        "depth=12 compress=4:2 mode=select", "compress=4:22")}
    assert len(names) == 5 and all("/" not in n and " " not in n for n in names)


def test_candidates_jsonl_gives_the_same_run(reference, common, data, tmp_path):
    from mrr_jax.data import candidates

    run = trec.load_run(data / "bm25" / "dev.trec")
    queries = beir.load_queries(data / "queries.jsonl")
    items = list(candidates.from_run(run, queries))  # no text: looked up in --corpus
    candidates.write_candidates(tmp_path / "cands.jsonl", items)
    argv = list(common)
    for flag in ("--queries", "--run"):
        i = argv.index(flag)
        del argv[i:i + 2]
    assert score.main([*argv, "--candidates", str(tmp_path / "cands.jsonl"),
                       "--out", str(tmp_path / "job")]) == 0
    assert (tmp_path / "job" / "run.trec").read_bytes() == (reference / "run.trec").read_bytes()


# The fingerprint of a job without adapters, as the code that wrote the existing manifests
# computed it (``sha256(json.dumps(hashed, sort_keys=True))``): ``--resume`` of an output folder
# written before the hasher moved to ``mrr_jax.runtime.digest`` must still be accepted.
FROZEN_HASHED = {
    "version": 1, "model": {"path": "/m", "files": {"config.json": {"size": 2, "sha256": "ab"}}},
    "inputs": {"run": {"path": "/r", "size": 1, "sha256": "cd"}}, "plans": ["depth=30", "depth=3"],
    "top_k": 7, "batch_size": 32, "tokens_per_batch": None, "max_length": 512,
    "query_max_length": None, "dtype": "float32", "compat": "default", "chunk_pairs": 256,
    "max_queries": None, "on_missing": "error", "tag": "mrr_jax"}
FROZEN_FINGERPRINT = "75199821418252dc4762d0a179156c024ae9acd5300407df97107155c727b40d"


def test_fingerprint_values_are_unchanged():
    assert score.job_fingerprint(FROZEN_HASHED) == FROZEN_FINGERPRINT


def test_hashed_config_fingerprints_every_file(tmp_path):
    """The hashed configuration names each input and model file by path, size and SHA-256, as
    the manifests already on disk do."""
    import hashlib

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "w.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "run.trec").write_text("q Q0 d 1 1.0 t\n")

    def file_id(p: Path) -> dict:
        return {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}

    cfg = score.JobConfig(out="o", model=str(model), run=str(tmp_path / "run.trec"),
                          corpus=str(tmp_path / "absent.jsonl"), top_k=7)
    plans = [Plan.parse("full").resolve(30)]
    hashed = cfg.hashed(plans, model)
    assert hashed == {
        "version": 1,
        "model": {"path": str(model.resolve()), "files": {
            "config.json": file_id(model / "config.json"), "w.bin": file_id(model / "w.bin")}},
        "inputs": {"corpus": {"path": str(tmp_path / "absent.jsonl")},
                   "run": {"path": str((tmp_path / "run.trec").resolve()),
                           **file_id(tmp_path / "run.trec")}},
        "plans": [str(plans[0])], "top_k": 7, "batch_size": 32, "tokens_per_batch": None,
        "max_length": 512, "query_max_length": None, "dtype": "float32", "compat": "default",
        "chunk_pairs": 256, "max_queries": None, "on_missing": "error", "tag": "mrr_jax"}
    assert score.job_fingerprint(hashed) == hashlib.sha256(
        json.dumps(hashed, sort_keys=True).encode()).hexdigest()


def test_no_test_hook_in_the_config(tmp_path):
    """The job's settings are its flags only: the old hidden ``throttle`` is an unknown key."""
    with pytest.raises(score.JobError, match="unknown key 'throttle'"):
        score.JobConfig.from_dict({"throttle": 0.3})
    with pytest.raises(SystemExit):
        score.parse_config(["--out", str(tmp_path), "--throttle", "0.3"])
