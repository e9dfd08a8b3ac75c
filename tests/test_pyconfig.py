"""Config files: Python get_config(arg) and JSON through the one loader, ``load_config``; every
problem is a ConfigError that names the file and, for an override, the key."""

import json

import pytest

from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.scoring_job.job import parse_config


def test_python_config_with_arg_and_flag_override():
    c = load_config("configs/score_stdlib.py:test")
    assert c.run.endswith("bm25/test.trec") and c["top_k"] == 20
    job = parse_config(["--config", "configs/score_stdlib.py:dev", "--top-k", "5", "--out", "o"])
    assert job.top_k == 5 and job.run.endswith("bm25/dev.trec") and len(job.plan) == 4
    with pytest.raises(ConfigError, match="score_stdlib.py:nope: split must be"):
        load_config("configs/score_stdlib.py:nope")


def test_json_config_with_overrides(tmp_path):
    f = tmp_path / "job.json"
    f.write_text(json.dumps({"top_k": 7, "model": None, "plan": ["full"], "max-length": 64}))
    assert load_config(f).to_dict() == {"top_k": 7, "model": None, "plan": ["full"],
                                        "max-length": 64}
    c = load_config(f, ["top_k=3", "model=/m", "plan=('full', 'depth=2')", "max-length=32"])
    assert (c.top_k, c.model, c.plan, c["max-length"]) == (3, "/m", ["full", "depth=2"], 32)
    with pytest.raises(ConfigError, match="^topk=3: no key topk in .*job.json .*known here: "
                                          "max-length, model, plan, top_k"):
        load_config(f, ["topk=3"])
    with pytest.raises(ConfigError, match="^top_k=2.5: expected an int, got 2.5$"):
        load_config(f, ["top_k=2.5"])


def test_override_errors_are_one_plain_line_that_starts_with_the_override(tmp_path):
    """As typed on a command line (``flag`` + ``key=value``), then what the setting takes and
    the value as typed: no quotes, no repr, no ml_collections internals."""
    f = tmp_path / "job.json"
    f.write_text(json.dumps({"n": 7, "lr": 0.1, "on": True, "plans": ["full"],
                             "group": {"a": 1}}))
    cases = {
        "n=2.5": "--x.n=2.5: expected an int, got 2.5",
        "n=many": "--x.n=many: expected an int, got many",
        "n='3'": "--x.n='3': expected an int, got '3'",
        "lr=fast": "--x.lr=fast: expected a float, got fast",
        "on=1": "--x.on=1: expected True or False, got 1",
        "plans=full": "--x.plans=full: expected a list, got full",
        "group=1": "--x.group=1: group is a group of settings (a); set them one by one",
        "group.a.b=1": "--x.group.a.b=1: group.a is a setting, not a group of settings",
        "nope.a=1": "--x.nope.a=1: no key nope in " + str(f) + " (known here: group, lr, n, "
                    "on, plans)",
        "n": "--x.n: expected --x.KEY=VALUE",
    }
    for item, message in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config(f, [item], flag="--x.")
        assert str(e.value) == message
    c = load_config(f, ["n=3", "lr=1", "on=False", "plans=('full', 'depth=2')", "group.a=2"],
                    flag="--x.")
    assert (c.n, c.lr, c.on, c.plans, c.group.a) == (3, 1.0, False, ["full", "depth=2"], 2)


def test_file_errors(tmp_path):
    f = tmp_path / "job.json"
    f.write_text("{\n  'top_k': 7}")
    with pytest.raises(ConfigError, match="line 2: malformed JSON"):
        load_config(f)
    f.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="job.json: cannot be read"):
        load_config(f)
    with pytest.raises(ConfigError, match="missing.py: no such file"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        load_config(tmp_path / "bad.py")
    (tmp_path / "list.py").write_text("def get_config():\n    return [1]\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        load_config(tmp_path / "list.py")
    (tmp_path / "c.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="expected a .py or .json file"):
        load_config(tmp_path / "c.yaml")
