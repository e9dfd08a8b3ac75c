"""``make demo`` and the ablation script, end to end on the tiny config (plumbing: every stage
runs, resumes, and the report has one row per plan and one column per model). The real
SmolLM2 numbers are in the README, produced by ``make demo`` / ``make ablation``."""

import json
import shutil
from pathlib import Path

from mrr_jax.experiments import ablation, demo

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
ARGS = ["--config", TINY, "--steps", "2", "--stage2-steps", "2", "--max-queries", "3",
        "--top-k", "4"]


def test_demo_then_ablation(tmp_path, example_data, capsys):
    out = tmp_path / "demo"
    shutil.copytree(example_data, out / "data")
    assert demo.main(["--out", str(out), *ARGS]) == 0
    table = capsys.readouterr().out
    report = json.loads((out / "demo.json").read_text())
    plans = [r["plan"] for r in report["rows"]]
    assert plans == ["full", "depth=4", "compress=2:2", "BM25"]
    assert list(report["rows"][0]["models"]) == ["zero-shot", "stage 1",
                                                 "stage 1 + compensation"]
    assert (out / "demo.png").stat().st_size > 1000 and "| compress=2:2 |" in table
    adapters = sorted(p.name for p in (out / "stage2" / "adapters").iterdir())
    assert adapters == ["h2", "h4", "vertical"]
    # A second run reuses every finished stage (no retraining: checkpoints are unchanged).
    before = sorted((out / "stage1" / "checkpoints").iterdir())
    assert demo.main(["--out", str(out), *ARGS]) == 0
    assert sorted((out / "stage1" / "checkpoints").iterdir()) == before

    abl = tmp_path / "ablation"
    assert ablation.main(["--out", str(abl), "--demo", str(out), *ARGS]) == 0
    rows = json.loads((abl / "ablation.json").read_text())["rows"]
    assert list(rows[0]["models"]) == ["(i) last exit", "(ii) CE all exits", "(iii) cascade",
                                       "(iv) cascade + comp"]
    # (iii) and (iv) are the demo's own runs, reused.
    assert rows[0]["models"]["(iii) cascade"] == report["rows"][0]["models"]["stage 1"]
    last = json.loads((abl / "i__last_exit" / "config.json").read_text())
    assert last["loss"]["exits"] == "last" and last["compress"]["ratios"] == [1]
