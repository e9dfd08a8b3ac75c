"""The trainer is hard to misuse: every mistake a user reported gets one plain line and the
right exit status, and a workdir is never damaged.

Proves, on the tiny config (random 6-layer model, a few steps): a rerun of a finished run
changes nothing and says where the adapters are; a resumed run keeps the records of the run it
continues (step-0 eval, no duplicated steps); another stage or model is refused before orbax
reads a checkpoint, naming the keys that differ; raising ``train.steps`` extends a finished run
and lowering it below the workdir's progress is refused; a file as ``--workdir`` is named; bad
config values and bad overrides are refused at load time, naming key and value; a run with no
dev set ends with a summary line; ``eval.plans`` go through ``Plan.parse`` even without a dev
set; SIGINT / SIGTERM stop at a step boundary with a checkpoint, no traceback and no partial
checkpoint, and the same command then finishes with the adapters of an uninterrupted run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from test_train import SLOW_TRAIN  # tests/ is on sys.path (pytest rootdir import)

from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.training import loop
from mrr_jax.training.config import check_config
from mrr_jax.weights.adapters import read_adapter

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.py")


def _args(workdir, data, *extra, config=TINY):
    return ["--config", config, "--workdir", str(workdir),
            f"--config.data.train={data / 'train.jsonl'}",
            f"--config.data.dev={data / 'dev.jsonl'}", "--config.eval.plans=('full',)",
            "--config.eval.max_queries=4", "--config.train.steps=6",
            "--config.train.save_every=2", "--config.train.progress=False", *extra]


def _env():
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


def _train(workdir, data, *extra, config=TINY):
    return subprocess.run([sys.executable, "-m", "mrr_jax.train",
                           *_args(workdir, data, *extra, config=config)],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)


def _snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file()}


def _records(workdir):
    return [json.loads(x) for x in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _steps(workdir):
    return [r["step"] for r in _records(workdir) if "loss" in r]


def _evals(workdir):
    return [r["step"] for r in _records(workdir) if "eval" in r]


def _summary(workdir):
    return json.loads((Path(workdir) / "summary.json").read_text())


def _adapter(workdir):
    return read_adapter(Path(workdir) / "adapters" / "stage1")[0]


def _same_adapters(a, b):
    jax.tree.map(np.testing.assert_array_equal, _adapter(a), _adapter(b))


def _copy(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work)
    return work


@pytest.fixture(scope="module")
def finished(tmp_path_factory, example_data):
    """One uninterrupted 6-step run with a dev set, shared (read-only) by the tests."""
    out = tmp_path_factory.mktemp("hardening") / "run"
    r = _train(out, example_data)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _main(capsys, argv):
    """(exit status, stdout, stderr) of the trainer's CLI, in process."""
    capsys.readouterr()
    code = loop.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- 1. records
def test_rerun_of_a_finished_run_changes_nothing(finished, tmp_path, example_data):
    work = _copy(finished, tmp_path)
    before = _snapshot(work)
    r = _train(work, example_data)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _snapshot(work) == before
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "finished" in lines[0], r.stdout
    assert str(work / "adapters" / "stage1") in lines[0]
    assert "--config.train.steps=" in lines[0]  # how to extend it
    assert "Traceback" not in r.stderr


def test_resumed_run_keeps_the_records_of_the_run_it_continues(finished, tmp_path,
                                                               example_data):
    """A run that died after logging steps 5-6 and the final eval but before its step-6
    checkpoint: the resumed run drops the records past its checkpoint (step 4), logs steps 5-6
    and the final eval once, and reports the original step-0 eval."""
    work = _copy(finished, tmp_path)
    shutil.rmtree(work / "checkpoints" / "6")
    shutil.rmtree(work / "adapters")
    (work / "summary.json").unlink()
    with open(work / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a record torn by the kill
    r = _train(work, example_data)
    assert r.returncode == 0, r.stderr[-3000:]
    summary, original = _summary(work), _summary(finished)
    assert summary["resumed_from"] == 4
    assert summary["first_eval"] == original["first_eval"] is not None
    assert summary["final_eval"] == original["final_eval"]
    assert _steps(work) == [1, 2, 3, 4, 5, 6]
    assert _evals(work) == [0, 6]
    _same_adapters(work, finished)


# ----------------------------------------------------------------------------- 2. resume
@pytest.mark.parametrize("config,extra,keys", [
    (TINY + ":vertical", (), "stage"),
    (TINY, ("--config.model.path=smollm2",), "model.path"),
    (TINY, ("--config.optim.lr=0.5",), "optim.lr"),
], ids=["stage", "model", "lr"])
def test_another_config_is_refused_before_orbax(finished, tmp_path, example_data, config,
                                                extra, keys):
    work = _copy(finished, tmp_path)
    before = _snapshot(work)
    r = _train(work, example_data, *extra, config=config)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert "differs in: " in lines[0] and keys in lines[0].split("differs in: ")[1]
    assert str(work) in lines[0]
    assert _snapshot(work) == before


def test_raising_train_steps_extends_a_finished_run(finished, tmp_path, example_data):
    work = _copy(finished, tmp_path)
    r = _train(work, example_data, "--config.train.steps=8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "learning-rate schedule" in r.stderr
    summary = _summary(work)
    assert (summary["steps"], summary["resumed_from"]) == (8, 6)
    assert summary["first_eval"] == _summary(finished)["first_eval"]
    assert _steps(work) == list(range(1, 9))
    assert _evals(work) == [0, 6, 8]
    again = _train(work, example_data, "--config.train.steps=8")
    assert again.returncode == 0 and "finished" in again.stdout
    lower = _train(work, example_data, "--config.train.steps=7")  # refused once data is read
    assert lower.returncode == 2 and "Traceback" not in lower.stderr
    last = lower.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "reached step 8" in last and "train.steps" in last


# ----------------------------------------------------------------------------- 3. workdir
def test_a_file_as_workdir_is_named(tmp_path, example_data, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for workdir in (f, f / "below"):
        code, out, err = _main(capsys, _args(workdir, example_data))
        assert code == 2
        assert err.count("\n") == 1 and err.startswith("error: --workdir ") and str(f) in err


# ----------------------------------------------------------------------------- 4. values
BAD_VALUES = [
    ("lora.rank=0", "lora.rank", "0"),
    ("lora.alpha=0", "lora.alpha", "0"),
    ("lora.dropout=1.0", "lora.dropout", "1.0"),
    ("data.group_size=0", "data.group_size", "0"),
    ("data.queries_per_step=0", "data.queries_per_step", "0"),
    ("data.accum=0", "data.accum", "0"),
    ("data.query_max_len=0", "data.query_max_len", "0"),
    ("train.steps=-1", "train.steps", "-1"),
    ("train.save_every=0", "train.save_every", "0"),
    ("train.log_every=0", "train.log_every", "0"),
    ("train.keep=0", "train.keep", "0"),
    ("train.eval_every=-2", "train.eval_every", "-2"),
    ("compress.prob=1.5", "compress.prob", "1.5"),
    ("compress.layers=(0, 2)", "compress.layers", "0"),
    ("compress.mode='squash'", "compress.mode", "squash"),
    ("optim.lr=0", "optim.lr", "0"),
    ("optim.warmup_ratio=2", "optim.warmup_ratio", "2"),
    ("optim.b2=1.5", "optim.b2", "1.5"),
    ("loss.teacher='nope'", "loss.teacher", "nope"),
    ("loss.temperature=0", "loss.temperature", "0"),
    ("loss.anchor_every=0", "loss.anchor_every", "0"),
    ("model.dtype='float16'", "model.dtype", "float16"),
    ("mesh.fsdp=0", "mesh.fsdp", "0"),
    ("eval.group_size=0", "eval.group_size", "0"),
    ("eval.batch_size=0", "eval.batch_size", "0"),
    ("eval.max_queries=0", "eval.max_queries", "0"),
    ("eval.plans=('full', 'depth=x')", "eval.plans", "depth=x"),
    ("lora.targets=('q', 'qq')", "lora.targets", "qq"),
]


@pytest.mark.parametrize("override,key,value", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_refused_naming_key_and_value(override, key, value):
    with pytest.raises(ConfigError) as e:
        check_config(load_config(TINY, [override]))
    msg = str(e.value)
    assert msg.startswith(f"{key}: ") and value in msg and "\n" not in msg


def test_rank_zero_is_one_line_not_a_zero_division(tmp_path, example_data, capsys):
    code, out, err = _main(capsys, _args(tmp_path / "w", example_data, "--config.lora.rank=0"))
    assert code == 2
    assert err == "error: lora.rank: expected an int >= 1, got 0\n"
    assert not (tmp_path / "w").exists()


def test_every_config_value_of_the_shipped_configs_passes():
    for f in sorted((ROOT / "configs").glob("*.py")):
        if f.stem != "score_stdlib":
            check_config(load_config(f))


# ----------------------------------------------------------------------------- 6. overrides
OVERRIDE_ERRORS = [
    ("--config.train.steps=2.5", "error: --config.train.steps=2.5: expected an int, got 2.5"),
    ("--config.train.steps=many", "error: --config.train.steps=many: expected an int, got many"),
    ("--config.train.progress=0",
     "error: --config.train.progress=0: expected True or False, got 0"),
    ("--config.train=3", "error: --config.train=3: train is a group of settings (epochs, "
                         "eval_every, keep, log_every, peak_tflops, progress, remat, save_every, "
                         "steps); "
                         "set them one by one"),
    ("--config.train.steps", "error: --config.train.steps: expected --config.KEY=VALUE"),
    ("--config.train.steps=-1", "error: train.steps: expected an int >= 0 (0: train.epochs "
                                "passes over the data), got -1"),
]


@pytest.mark.parametrize("flag,expected", OVERRIDE_ERRORS, ids=[o[0] for o in OVERRIDE_ERRORS])
def test_override_errors_are_one_plain_line(tmp_path, example_data, capsys, flag, expected):
    code, out, err = _main(capsys, _args(tmp_path / "w", example_data, flag))
    assert code == 2
    assert err == expected + "\n"


def test_unknown_keys_are_named_without_quotes(tmp_path, example_data, capsys):
    code, _, err = _main(capsys, _args(tmp_path / "w", example_data, "--config.foo=1"))
    assert code == 2 and err.startswith(f"error: --config.foo=1: no key foo in {TINY} "
                                        "(known here: compress, data, eval,")
    code, _, err = _main(capsys, _args(tmp_path / "w", example_data, "--config.trian.steps=1"))
    assert code == 2 and err.startswith(f"error: --config.trian.steps=1: no key trian in {TINY}")
    assert "'" not in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- 7. no dev set
def test_no_dev_set_ends_with_a_summary_line(tmp_path, example_data):
    work = tmp_path / "nodev"
    r = _train(work, example_data, "--config.data.dev=", "--config.train.steps=1",
               "--config.train.save_every=1")
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last == f"no dev set (data.dev is empty): no evaluation; adapters in " \
                   f"{work / 'adapters' / 'stage1'}"


# ----------------------------------------------------------------------------- 8. plans
def test_eval_plans_go_through_plan_parse(tmp_path, example_data, capsys):
    check_config(load_config(TINY, ["eval.plans=('FULL', '', 'depth=4 compress=2:2')"]))
    # Refused even with no dev set (where they are never evaluated), before any training.
    code, _, err = _main(capsys, _args(tmp_path / "w", example_data, "--config.data.dev=",
                                       "--config.eval.plans=('full', 'depth=x')"))
    assert code == 2 and err.startswith("error: eval.plans: ") and "depth=x" in err
    assert err.count("\n") == 1
    with pytest.raises(ConfigError, match=r"^eval.plans: .*\bint\b"):
        check_config(load_config(TINY, ["eval.plans=('full', 3)"]))
    # Deeper than the model: refused once the model is known, before step 0.
    code, _, err = _main(capsys, _args(tmp_path / "w2", example_data,
                                       "--config.eval.plans=('depth=9',)"))
    assert code == 2 and err.startswith("error: eval.plans: ") and "depth=9" in err
    assert not (tmp_path / "w2" / "checkpoints").exists()


# ----------------------------------------------------------------------------- 5. signals
# The trainer's CLI slowed down in the child (test_train.SLOW_TRAIN), so a signal lands mid-run.


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_and_the_same_command_finishes(finished, tmp_path,
                                                              example_data, sig):
    work = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, *_args(work, example_data)],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        if (work / "metrics.jsonl").is_file() and _steps(work):
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    n = int(last.removeprefix("interrupted at step ").split(";")[0])
    assert last == f"interrupted at step {n}; resume with the same command"
    assert 1 <= n < 6 and not (work / "adapters").exists()
    ckpts = sorted((work / "checkpoints").iterdir())
    assert all(p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file() for p in ckpts), \
        [p.name for p in ckpts]
    assert max(int(p.name) for p in ckpts) == n  # the step it stopped at was saved
    r = _train(work, example_data)
    assert r.returncode == 0, r.stderr[-3000:]
    _same_adapters(work, finished)
    assert _summary(work)["first_eval"] == _summary(finished)["first_eval"]
    assert _summary(work)["resumed_from"] == n
    assert _steps(work) == [1, 2, 3, 4, 5, 6] and _evals(work) == [0, 6]
