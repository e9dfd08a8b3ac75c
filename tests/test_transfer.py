"""``python -m mrr_jax.transfer`` end to end on the tiny config and a fixture Debian Reference
book (plumbing: the set is built, every model gets a row per plan with its change against
zero-shot and an interval; bad --model values are refused). The real numbers are the README's
transfer table."""

import json
from pathlib import Path

import pytest
from test_data_transfer import write_book

from mrr_jax.experiments import transfer
from mrr_jax.runtime.pyconfig import load_config
from mrr_jax.training import loop as train

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")


def test_transfer_table(tmp_path, example_data, monkeypatch):
    from mrr_jax.data import debref

    monkeypatch.setenv("MRR_JAX_EXAMPLE_DIR", str(example_data))
    data = tmp_path / "debref"
    assert debref.main([str(data), "--source", str(write_book(tmp_path / "book"))]) == 0
    c = load_config(TINY, ["train.steps=2", "eval.plans=()", "train.progress=False"])
    train.run(c, tmp_path / "run")
    adapter = tmp_path / "run" / "adapters" / "stage1"
    out = tmp_path / "out"
    assert transfer.main(["--out", str(out), "--data", str(data), "--config", TINY,
                          "--model", f"stage 1={adapter}", "--top-k", "4"]) == 0
    report = json.loads((out / "transfer.json").read_text())
    rows = report["rows"]
    assert [r["plan"] for r in rows] == ["full", "depth=4", "compress=2:2", "BM25"]
    full = rows[0]["models"]
    assert list(full) == ["zero-shot", "stage 1"]
    assert full["stage 1"]["vs_first"]["queries"] == rows[0]["queries"] > 0
    assert "[95% CI]" in (out / "transfer.md").read_text()
    assert (out / "transfer.png").stat().st_size > 1000


@pytest.mark.parametrize("value,message", [
    ("nameonly", "expected NAME=ADAPTER_DIR"),
    ("x=/nonexistent/adapter", "no adapter folder /nonexistent/adapter"),
])
def test_bad_models_are_refused(value, message, capsys):
    assert transfer.main(["--model", value]) == 2
    assert message in capsys.readouterr().err
