"""Training throughput in ``metrics.jsonl`` (model FLOPs, TFLOP/s, MFU) and the single pass on
steps that draw ratio 1 (issue 13, item 5). Plumbing and exact arithmetic on the tiny model."""

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from mrr_jax.core.plan import Plan
from mrr_jax.runtime.pyconfig import load_config
from mrr_jax.training import loop as train
from mrr_jax.training import step as train_step
from mrr_jax.training.throughput import step_flops

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory, example_data):
    work = tmp_path_factory.mktemp("tp")
    c = load_config(TINY, ["train.progress=False", "train.peak_tflops=2.0", "eval.plans=()"])
    with pytest.MonkeyPatch.context() as mp:  # only for this run, not for later tests
        mp.setenv("MRR_JAX_EXAMPLE_DIR", str(example_data))
        train.run(c, work)
    recs = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    return c, [r for r in recs if "loss" in r]


def test_metrics_carry_model_flops_tflops_and_mfu(run):
    c, recs = run
    assert len(recs) == c.train.steps
    for r in recs:
        assert r["model_tflop"] > 0
        assert r["tflops"] == pytest.approx(r["model_tflop"] / r["step_seconds"], rel=1e-2)
        # MFU against train.peak_tflops per device, over every device of the run
        assert r["mfu"] == pytest.approx(r["tflops"] / (2.0 * jax.device_count()), rel=1e-2,
                                         abs=1e-5)
        # a separate full-width teacher pass ran exactly on the micro-batches of ratio > 1
        assert r["teacher_passes"] == sum(x != 1 for x in r["ratios"])


def test_no_mfu_without_a_known_peak():
    from mrr_jax.training.throughput import job_peak

    def job(peak):
        return SimpleNamespace(c=SimpleNamespace(train=SimpleNamespace(peak_tflops=peak)))

    assert job_peak(job(0.0)) is None  # a CPU has no entry in the chip table: no MFU
    assert job_peak(job(3.5)) == 3.5


def test_step_flops_counts_forward_backward_and_the_teacher():
    from mrr_jax.core.config import ModelConfig

    cfg = ModelConfig(family="llama", vocab_size=100, hidden_size=32, intermediate_size=64,
                      num_layers=6, num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-5,
                      rope_theta=1e4, tie_word_embeddings=True)
    rows = SimpleNamespace(q_len=np.array([5, 6]), p_len=np.array([20, 9]),
                           r_len=np.array([4, 4]))
    job = SimpleNamespace(rr=SimpleNamespace(cfg=cfg),
                          spec=SimpleNamespace(candidates=(2, 4)))
    full = sum(Plan().flops(cfg, 5 + i, p, 4) for i, p in ((0, 20), (1, 9)))
    # ratio 1: forward + backward of the full model, no separate teacher
    m = {"ratios": [1], "compress_at": [[True, False]], "teacher_pass": [False]}
    assert step_flops(job, m, [rows]) == pytest.approx(2 * full)
    # ratio 4 at layer 4: the sub-model twice, plus the full-width teacher
    sub = Plan(compress={4: 4})
    sub_flops = sum(sub.flops(cfg, 5 + i, p, 4) for i, p in ((0, 20), (1, 9)))
    m = {"ratios": [4], "compress_at": [[False, True]], "teacher_pass": [True]}
    assert step_flops(job, m, [rows]) == pytest.approx(2 * sub_flops + full)
    assert sub_flops < full


def test_ratio_one_is_its_own_teacher(example_data, monkeypatch):
    """With ratio 1 and no dropout, the single pass gives exactly the loss of two passes (the
    teacher pass would be the same computation)."""
    import jax.numpy as jnp

    from mrr_jax.training import losses

    monkeypatch.setenv("MRR_JAX_EXAMPLE_DIR", str(example_data))
    c = load_config(TINY, ["compress.ratios=(1,)", "lora.dropout=0.0", "eval.plans=()"])
    job, state = train.prepare(c, Path("/nonexistent-unused"))
    micro = [job.data.batch(0, 0, 1)]
    batch = {k: jnp.asarray(train.row_aligned(micro[0])[k]) for k in train_step.BATCH_KEYS}
    spec = job.spec
    loss, aux = train_step.micro_loss(state["trainable"], job.rr.params, job.rr.heads, batch,
                                      jax.random.key(0), spec)
    assert not bool(aux["teacher_pass"]) and int(aux["ratio"]) == 1
    from mrr_jax.core.forward import score_masked

    adapters = train_step.active_adapters(state["trainable"], jnp.int32(1), spec)
    student = score_masked(job.rr.params, job.rr.heads, adapters, batch["q_ids"],
                           batch["p_ids"], batch["r_ids"], batch["q_len"], batch["p_len"],
                           batch["r_len"], jnp.int32(1), aux["compress_at"], cfg=spec.cfg,
                           candidates=spec.candidates, exits=spec.exits,
                           start_layer=spec.start_layer, mode=spec.mode)
    g = spec.group_size
    s = student.reshape(len(spec.exits), -1, g)
    want, _ = losses.stage1_loss(
        s, s, spec.exits, teacher=batch["teacher"].reshape(-1, g),
        teacher_mask=batch["teacher_mask"].reshape(-1, g)[:, 0], anchors=spec.anchors,
        teacher_kind=spec.teacher_kind, temperature=spec.temperature,
        weights=dict(spec.weights))
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
