"""What a training step did, for ``metrics.jsonl``: loss and its terms, the drawn sub-models,
and throughput in tokens and in model FLOPs (with MFU where the chip's peak is known).

``job`` is the trainer's ``training.loop.TrainingRun``: it gives the config ``c``, the model
``rr``, the step's static ``spec`` and the learning-rate ``schedule``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mrr_jax.inputs.groups import TrainBatch


def step_record(job, step: int, m: dict[str, Any], micro: list[TrainBatch],
                seconds: float) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of optimizer step ``step`` (0-based) that took
    ``seconds``: loss, lr, gradient norm, loss terms per exit, drawn ratios, throughput in
    tokens and in model FLOPs (:func:`step_flops`; MFU where the chip's peak is known)."""
    real_tokens = int(sum((b.q_len + b.p_len + b.r_len).sum() for b in micro))
    real_tokens *= jax.process_count()
    padded = job.c.data.queries_per_step * job.c.data.group_size * job.c.data.accum * sum(
        micro[0].shape[1:])
    flops = step_flops(job, m, micro)
    rec = {"step": step + 1, "loss": float(m["loss"]), "lr": float(job.schedule(step)),
           "grad_norm": float(m["grad_norm"]),
           "terms": {k: np.asarray(v).round(5).tolist() for k, v in m["terms"].items()},
           "ratios": np.asarray(m["ratios"]).tolist(), "step_seconds": round(seconds, 3),
           "tokens_per_s": round(real_tokens / seconds, 1),
           "padded_tokens_per_s": round(padded / seconds, 1),
           "teacher_passes": int(np.asarray(m["teacher_pass"]).sum()),
           "model_tflop": _sig(flops / 1e12), "tflops": _sig(flops / seconds / 1e12)}
    peak = job_peak(job)
    if peak:
        rec["mfu"] = _sig(flops / seconds / 1e12 / (peak * jax.device_count()))
    return rec


def step_flops(job, m: dict[str, Any], micro: list[TrainBatch]) -> float:
    """Model FLOPs of one optimizer step, every process's rows: per micro-batch, its sampled
    sub-model's forward (``Plan.flops`` on each row's real segment lengths) twice -- the
    forward and the backward, which through a frozen base computes only the activations'
    gradients, about one forward's matmuls (LoRA's own small matmuls are not counted) -- plus
    the full-width teacher's forward where it ran. Remat's recomputation is not model FLOPs."""
    from mrr_jax.core.plan import Plan

    cfg, spec = job.rr.cfg, job.spec
    ratios, at = np.asarray(m["ratios"]), np.asarray(m["compress_at"])
    teacher = np.asarray(m["teacher_pass"])
    total = 0.0
    for a, b in enumerate(micro):
        r = int(ratios[a])
        sub = Plan(compress={layer: r for layer, on in zip(spec.candidates, at[a]) if on}) \
            if r > 1 else Plan()
        lengths = list(zip(b.q_len.tolist(), b.p_len.tolist(), b.r_len.tolist()))
        total += 2 * sum(sub.flops(cfg, *x) for x in lengths)
        if teacher[a]:
            total += sum(Plan().flops(cfg, *x) for x in lengths)
    return total * jax.process_count()


def job_peak(job) -> float | None:
    """Peak TFLOP/s per device for MFU: ``train.peak_tflops``, else the chip's (None: a CPU)."""
    from mrr_jax.runtime.chips import peak_tflops

    given = job.c.train.peak_tflops
    return peak_tflops(jax.devices()[0].device_kind, given if given > 0 else None)[0]


def _sig(x: float) -> float:
    """``x`` to 4 significant digits."""
    return float(f"{x:.4g}")
