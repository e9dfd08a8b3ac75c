"""The training loop on the tiny config (random 6-layer model, real example text).

Proves: one sharded step on 8 host devices (data x fsdp x tensor) gives the single-device
adapters; an inactive H-LoRA gets exactly zero gradient; config overrides refuse typos; the CLI
resumes after kill -9 to the same adapters as an uninterrupted run, with no half-written
checkpoint; two processes under ``jax.distributed`` train together like one process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mrr_jax.core.lora import LoraConfig, init_lora
from mrr_jax.inputs.groups import TrainData
from mrr_jax.runtime import sharding
from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.training import loop as train
from mrr_jax.training import step as train_step
from mrr_jax.training.data import data_paths, row_aligned
from mrr_jax.weights.adapters import read_adapter

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.py")


def _tiny(example_data, **over):
    c = load_config(TINY, [f"{k}={v!r}" for k, v in over.items()])
    c.data.train = str(example_data / "train.jsonl")
    return c


def _setup(c):
    rr = train.load_model(c)
    spec = train_step.step_spec(c, rr)
    data = TrainData(data_paths(c.data.train), rr.tokenizer, rr.bos_token_id,
                     global_batch=c.data.queries_per_step, group_size=c.data.group_size,
                     seed=c.seed, query_max_len=c.data.query_max_len,
                     passage_max_len=c.data.passage_max_len)
    return rr, spec, data


def _one_step(rr, spec, batches, mesh, lcfg, roles=("stage1",)):
    optimizer, _ = train_step.make_optimizer(1e-3, 10, 0)
    trainable = {r: init_lora(jax.random.key(i), rr.params, rr.heads, lcfg)
                 for i, r in enumerate(roles)}
    # Non-zero b so that every factor gets a gradient.
    trainable = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.05 if p[-1].key == "b" else x, trainable)
    state = {"trainable": trainable, "opt_state": optimizer.init(trainable)}
    state_sh = sharding.tree_shardings(state, mesh)
    state = sharding.put(state, state_sh)
    base = sharding.put(rr.params, sharding.tree_shardings(rr.params, mesh))
    heads = jax.device_put(rr.heads, sharding.replicated(mesh))
    step = jax.jit(lambda t, o, b, h, x, k: train_step.train_step(
        t, o, b, h, x, k, spec=spec, optimizer=optimizer),
        out_shardings=(state_sh["trainable"], state_sh["opt_state"], None))
    batch = sharding.global_batch(batches, mesh)
    t, _, m = step(state["trainable"], state["opt_state"], base, heads, batch, jax.random.key(3))
    return t, m


def test_sharded_step_equals_single_device(example_data):
    c = _tiny(example_data)
    rr, spec, data = _setup(c)
    micro = [row_aligned(data.batch(s)) for s in range(2)]  # 2 accumulated micro-batches
    batches = {k: np.stack([m[k] for m in micro]) for k in train_step.BATCH_KEYS}
    lcfg = LoraConfig(rank=4, alpha=8.0, dropout=0.1)
    one = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    eight = sharding.make_mesh(2, 2, 2)
    t1, m1 = _one_step(rr, spec, batches, one, lcfg)
    t8, m8 = _one_step(rr, spec, batches, eight, lcfg)
    layers = t8["stage1"]["layers"]
    assert layers["q"]["b"].sharding.spec == P(None, None, "tensor", None)
    assert layers["gate"]["a"].sharding.spec == P(None, "fsdp", None)
    np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(m8["ratios"]), np.asarray(m1["ratios"]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         atol=2e-6, rtol=1e-4), t8, t1)
    assert float(m1["grad_norm"]) > 0


def test_inactive_horizontal_adapter_gets_zero_gradient(example_data):
    c = _tiny(example_data, stage="joint")
    c.compress.ratios = (2,)
    rr, spec, data = _setup(c)
    spec = train_step.StepSpec(**{**spec.__dict__, "ratios": (2,)})
    lcfg = LoraConfig(rank=4, alpha=8.0, dropout=0.0)
    trainable = {r: jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.05 if p[-1].key == "b" else x,
        init_lora(jax.random.key(i), rr.params, rr.heads, lcfg))
        for i, r in enumerate(("vertical", "h2", "h4"))}
    batch = {k: jnp.asarray(v) for k, v in row_aligned(data.batch(0)).items()}
    grads = jax.grad(lambda t: train_step.micro_loss(t, rr.params, rr.heads, batch,
                                                     jax.random.key(0), spec)[0])(trainable)
    norms = {r: float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grads[r]))) for r in grads}
    assert norms["h4"] == 0.0
    assert norms["h2"] > 0 and norms["vertical"] > 0


def test_config_overrides_refuse_typos_and_wrong_types():
    c = load_config(TINY + ":vertical", ["train.steps=3", "compress.ratios=(2, 4)",
                                         "optim.lr=1"])
    assert (c.stage, c.train.steps, c.compress.ratios, c.optim.lr) == ("vertical", 3, (2, 4),
                                                                        1.0)
    with pytest.raises(ConfigError, match="^train.stepz=3: no key train.stepz in .*known "
                                          "here: .*steps"):
        load_config(TINY, ["train.stepz=3"])
    with pytest.raises(ConfigError, match="^trian.steps=3: no key trian in"):
        load_config(TINY, ["trian.steps=3"])
    with pytest.raises(ConfigError, match="^train.steps=many: expected an int, got many$"):
        load_config(TINY, ["train.steps=many"])
    with pytest.raises(ConfigError, match="^train.progress=0: expected True or False, got 0$"):
        load_config(TINY, ["train.progress=0"])
    with pytest.raises(ConfigError, match="^train=3: train is a group of settings"):
        load_config(TINY, ["train=3"])
    with pytest.raises(ConfigError, match="^train.steps: expected KEY=VALUE$"):
        load_config(TINY, ["train.steps"])
    with pytest.raises(ConfigError, match="^--config.train.steps=2.5: expected an int, got 2.5$"):
        load_config(TINY, ["train.steps=2.5"], flag="--config.")


# ----------------------------------------------------------------------------- CLI runs
def _cmd(workdir, example_data, *extra):
    return [sys.executable, "-m", "mrr_jax.train", *_args(workdir, example_data, *extra)]


def _args(workdir, example_data, *extra):
    return ["--config", TINY, "--workdir", str(workdir),
            f"--config.data.train={example_data / 'train.jsonl'}", "--config.eval.plans=()",
            "--config.train.steps=6", "--config.train.save_every=2",
            "--config.train.progress=False", *extra]


# The trainer's CLI with every optimizer step slowed down by 1.5 s, so that a kill lands
# mid-run: the test's own instrumentation, run in the child process.
SLOW_TRAIN = """
import sys, time
from mrr_jax.training import loop
step = loop.optimizer_step
def slow_step(*args):
    time.sleep(1.5)
    return step(*args)
loop.optimizer_step = slow_step
sys.exit(loop.main(sys.argv[1:]))
"""


def _env(devices=2, **extra):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def _adapter(workdir):
    params, _ = read_adapter(Path(workdir) / "adapters" / "stage1")
    return params


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, example_data):
    out = tmp_path_factory.mktemp("train_ref")
    subprocess.run(_cmd(out, example_data), env=_env(), check=True, cwd=ROOT, timeout=600)
    return out


def test_cli_run_writes_metrics_checkpoints_and_adapters(uninterrupted):
    lines = [json.loads(x) for x in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in steps)
    assert set(steps[0]["terms"]) == {"ce", "teacher", "self"}
    assert len(steps[0]["terms"]["ce"]) == 5  # exits 2..6
    assert sorted(p.name for p in (uninterrupted / "checkpoints").iterdir()) == ["4", "6"]
    assert json.loads((uninterrupted / "summary.json").read_text())["steps"] == 6


def test_kill_9_then_resume_gives_the_same_adapters(uninterrupted, tmp_path, example_data):
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, *_args(work, example_data)],
                            env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (work / "checkpoints" / "2").is_dir() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "adapters").exists()  # it really died before the end
    done = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert done and max(done) < 6
    subprocess.run(_cmd(work, example_data), env=_env(), check=True, cwd=ROOT, timeout=600)
    summary = json.loads((work / "summary.json").read_text())
    assert summary["resumed_from"] == max(done)
    jax.tree.map(np.testing.assert_array_equal, _adapter(work), _adapter(uninterrupted))
    left = [p.name for p in (work / "checkpoints").iterdir() if not p.name.isdigit()]
    assert not left, f"temporary checkpoint folders left: {left}"


def test_resume_refuses_a_changed_config(uninterrupted, tmp_path, example_data):
    r = subprocess.run(_cmd(uninterrupted, example_data, "--config.optim.lr=0.5"),
                       env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "another config" in r.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(uninterrupted, tmp_path, example_data):
    work = tmp_path / "two"
    port = _free_port()
    evaluate = ["--config.eval.plans=('full',)", "--config.eval.max_queries=4",
                f"--config.data.dev={example_data / 'dev.jsonl'}"]
    procs = [subprocess.Popen(_cmd(work, example_data, "--distributed", *evaluate), cwd=ROOT,
                              env=_env(1, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5),
                 _adapter(work), _adapter(uninterrupted))
    evals = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()
             if "eval" in x]
    assert [e["step"] for e in evals] == [0, 6]  # evaluation runs across both processes


# ----------------------------------------------------------------------------- train_eval
def test_paired_statistics_by_hand():
    from mrr_jax.training.compare import paired

    p = paired([0.5, 1.0, 0.25, 1.0], [1.0, 1.0, 0.5, 0.5])
    assert p["change"] == pytest.approx((0.5 + 0 + 0.25 - 0.5) / 4)
    assert (p["up"], p["down"], p["same"]) == (2, 1, 1)
    assert -0.5 <= p["ci95"][0] <= p["change"] <= p["ci95"][1] <= 0.5
    assert paired([0.2] * 5, [0.7] * 5)["ci95"] == pytest.approx([0.5, 0.5])


def test_train_eval_reproduces_the_runs_first_and_last_eval(tmp_path, example_data, capsys):
    """``mrr_jax.training.compare`` on a finished run: its "start" numbers are the run's step-0 eval
    and its "trained" numbers the run's final eval (same dev groups, same plans), and adapters
    of another config are refused."""
    from mrr_jax.training import compare as train_eval

    work = tmp_path / "run"
    dev = f"--config.data.dev={example_data / 'dev.jsonl'}"
    cmd = _cmd(work, example_data, dev, "--config.eval.plans=('full', 'compress=2:2')")
    cmd.remove("--config.eval.plans=()")
    subprocess.run(cmd, env=_env(devices=1), check=True, cwd=ROOT, timeout=600)
    summary = json.loads((work / "summary.json").read_text())
    args = ["--config", TINY, "--workdir", str(work), *cmd[cmd.index("--workdir") + 2:]]
    assert train_eval.main(args) == 0
    result = json.loads((work / "train_eval.json").read_text())
    assert list(result["plans"]) == ["full", "compress=2:2"]
    n = result["queries"]
    assert 0 < n == len(result["qids"]) <= 16 and result["group_size"] == 4
    for plan, p in result["plans"].items():
        for name, run_eval in (("start", summary["first_eval"]), ("trained",
                                                                   summary["final_eval"])):
            assert p[name]["mrr@10"] == pytest.approx(run_eval[plan]["mrr@10"], abs=1e-9)
            assert p[name]["loss"] == pytest.approx(run_eval[plan]["loss"], rel=1e-5)
            assert np.mean(p["per_query"][name]["rr"]) == pytest.approx(p[name]["mrr@10"])
        assert p["mrr@10"]["change"] == pytest.approx(p["trained"]["mrr@10"]
                                                      - p["start"]["mrr@10"])
        assert p["mrr@10"]["up"] + p["mrr@10"]["down"] + p["mrr@10"]["same"] == n
    capsys.readouterr()
    assert train_eval.main([*args, "--config.lora.rank=8"]) == 2  # another config's adapters
    assert "trained with another config" in capsys.readouterr().err
    empty = tmp_path / "unfinished"  # a workdir without final adapters: clear error, no file
    assert train_eval.main(["--config", TINY, "--workdir", str(empty)]) == 2
    assert "no such adapter (has the run finished?)" in capsys.readouterr().err
    assert not empty.exists()
