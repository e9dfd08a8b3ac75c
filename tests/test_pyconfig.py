"""Config files: Python get_config(arg) and JSON, as the scoring job reads them."""

import json

import pytest

from mrr_jax.runtime.pyconfig import load_config
from mrr_jax.scoring_job.job import parse_config


def test_python_config_with_arg_and_flag_override():
    c = load_config("configs/score_stdlib.py:test")
    assert c["run"].endswith("bm25/test.trec") and c["top_k"] == 20
    job = parse_config(["--config", "configs/score_stdlib.py:dev", "--top-k", "5", "--out", "o"])
    assert job.top_k == 5 and job.run.endswith("bm25/dev.trec") and len(job.plan) == 4
    with pytest.raises(ValueError, match="split must be"):
        load_config("configs/score_stdlib.py:nope")


def test_json_config_and_errors(tmp_path):
    f = tmp_path / "job.json"
    f.write_text(json.dumps({"top_k": 7}))
    assert load_config(f) == {"top_k": 7}
    f.write_text("{\n  'top_k': 7}")
    with pytest.raises(ValueError, match="line 2: malformed JSON"):
        load_config(f)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        load_config(tmp_path / "bad.py")
