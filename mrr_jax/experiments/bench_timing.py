"""Timed cases of the benchmark: mrr_jax under a plan, PyTorch ``transformers`` (eager or
sdpa attention) on the same batches; warm-up, round-robin timing, and the predicted cost."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair

if TYPE_CHECKING:
    from mrr_jax.core.config import ModelConfig
    from mrr_jax.inference.reranker import Reranker

TORCH_WARM_ROWS = 4


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Case:
    """One timed configuration: ``warm_up`` (first call), ``score_all`` (scores [n]) and what
    was measured."""

    name: str
    warm_up: Callable[[], object]
    score_all: Callable[[], np.ndarray]
    warm_rows: int = 0  # pairs scored by the warm-up
    load_s: float | None = None  # seconds to load its model onto its device
    first_call_s: float = 0.0
    times_s: list[float] = dataclasses.field(default_factory=list)
    scores: np.ndarray | None = None

    def result(self, n: int) -> dict:
        """pairs_per_s (best pass), best_s, times_s, first_call_s, compile_est_s (first call
        minus the steady-state time of its rows, >= 0), load_s and scores [n]."""
        best = min(self.times_s)
        return {"pairs_per_s": n / best, "best_s": best, "times_s": self.times_s,
                "first_call_s": self.first_call_s,
                "compile_est_s": max(0.0, self.first_call_s - best * self.warm_rows / n),
                "load_s": self.load_s, "scores": self.scores}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call; results are host numpy arrays, so the call has ended."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def warm_up(cases: Sequence[Case]) -> None:
    """Times each case's first call."""
    for case in cases:
        case.first_call_s = timed(case.warm_up)[0]
        log(f"  {case.name}: first call {case.first_call_s:.1f} s")


def measure(cases: Sequence[Case], repeats: int, n: int) -> list[float]:
    """``repeats`` rounds over all cases in turn (round robin, so that a change in the
    machine's load hits every case alike); each case keeps its pass times and last scores.
    Returns the 1-minute load average at the start of each round."""
    loads = []
    for r in range(repeats):
        loads.append(os.getloadavg()[0])
        for case in cases:
            t, case.scores = timed(case.score_all)
            case.times_s.append(t)
            log(f"  round {r + 1}/{repeats} {case.name}: {n / t:.2f} pairs/s")
    return loads


def shape_representatives(encoded: Sequence[EncodedPair], batch_size: int) -> list[list[int]]:
    """One batch (indices, as ``score_encoded`` forms them) per distinct compiled shape."""
    seen: dict[tuple, list[int]] = {}
    for idx in batching.plan_batches(encoded, batch_size):
        arrays = batching.pack([encoded[i] for i in idx],
                               batching.batch_bucket(len(idx), batch_size))
        key = tuple(arrays[k].shape for k in ("q_ids", "p_ids", "r_ids"))
        seen.setdefault(key, idx)
    return list(seen.values())


def jax_case(rr: Reranker, encoded: Sequence[EncodedPair], plan: Plan, batch_size: int) -> Case:
    """mrr_jax under ``plan``; the warm-up scores one batch per compiled shape."""
    reps = [[encoded[i] for i in idx] for idx in shape_representatives(encoded, batch_size)]

    def first() -> None:
        for rows in reps:
            rr.score_encoded(rows, plan=plan, batch_size=batch_size)

    def score_all() -> np.ndarray:
        return np.asarray(rr.score_encoded(encoded, plan=plan, batch_size=batch_size)[0],
                          np.float32)

    return Case(f"mrr_jax {plan}", first, score_all, warm_rows=sum(map(len, reps)))


def predicted_flops(cfg: ModelConfig, encoded: Sequence[EncodedPair], plan: Plan) -> float:
    """Mean predicted forward FLOPs per pair under ``plan`` (``Plan.flops``)."""
    return float(np.mean([plan.flops(cfg, len(e.query), len(e.passage), len(e.prompt))
                          for e in encoded]))


def padded_tokens(encoded: Sequence[EncodedPair], batch_size: int) -> int:
    """Token slots mrr_jax computes at the first layer (bucketed regions x padded batch)."""
    total = 0
    for idx in batching.plan_batches(encoded, batch_size):
        arrays = batching.pack([encoded[i] for i in idx],
                               batching.batch_bucket(len(idx), batch_size))
        total += sum(arrays[k].size for k in ("q_ids", "p_ids", "r_ids"))
    return total


def yes_token_id(rr: Reranker) -> int:
    """The id of "Yes" (the exit heads' LM-head row), as ``Reranker.from_pretrained`` finds it."""
    ids = rr.tokenizer.encode("Yes", add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"'Yes' is {len(ids)} tokens for this tokenizer")
    return ids[0]


def load_torch(model_dir: Path, attn: str, dtype: str, device: str = "cpu"):
    """The transformers causal LM (``LlamaForCausalLM`` for Llama) in eval mode, in ``dtype``
    on ``device`` ("cpu" or "cuda": loaded straight onto the GPU)."""
    import torch
    import transformers

    extra = {"device_map": device} if device != "cpu" else {}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), attn_implementation=attn, **extra).eval()
    sync(device)
    return model


def sync(device: str) -> None:
    """Waits for the device's queued work (CUDA kernels run asynchronously)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def torch_scores(model, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]],
                 yes_id: int) -> np.ndarray:
    """"Yes" logits [n] at each pair's last token: right-padded batches through the decoder,
    then the LM head on the gathered last real hidden state only ([B, D] -> [B, V])."""
    import torch

    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    device = model.device
    sync(device.type)
    out = np.zeros(len(encoded), np.float32)
    with torch.inference_mode():
        for idx in batches:
            lengths = [len(encoded[i]) for i in idx]
            ids = torch.full((len(idx), max(lengths)), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, i in enumerate(idx):
                ids[b, :lengths[b]] = torch.tensor(encoded[i].input_ids)
                mask[b, :lengths[b]] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            last = hidden[torch.arange(len(idx), device=device),
                          torch.tensor(lengths, device=device) - 1]
            out[list(idx)] = model.lm_head(last)[:, yes_id].float().cpu().numpy()
    sync(device.type)
    return out


def torch_case(model, attn: str, encoded: Sequence[EncodedPair], batch_size: int,
               yes_id: int) -> Case:
    """PyTorch on the same length-sorted batches as mrr_jax; nothing to compile, so the
    warm-up is a few rows of the first batch."""
    batches = batching.plan_batches(encoded, batch_size)
    head = batches[0][:TORCH_WARM_ROWS]
    return Case(f"PyTorch {attn}", lambda: torch_scores(model, encoded, [head], yes_id),
                lambda: torch_scores(model, encoded, batches, yes_id), warm_rows=len(head))
