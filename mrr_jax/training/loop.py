"""``python -m mrr_jax.train``: Matryoshka training (stage 1 or a stage-2 compensation run).

    python -m mrr_jax.train --config configs/smollm2_135m.py[:ARG] --workdir out/s1 \\
        [--config.train.steps=40 ...] [--distributed]

Writes ``<workdir>/metrics.jsonl`` (one JSON object per logged step: step, loss, loss terms per
exit, learning rate, tokens/s, and ``eval`` records), ``<workdir>/checkpoints/<step>`` (adapters
+ optimizer state + data position + resolved config; orbax, atomic), ``<workdir>/config.json``
and, at the end, ``<workdir>/adapters/<role>`` (loadable with ``Reranker.from_pretrained(...,
adapters=[...])``). Run the same command again and it resumes from the latest checkpoint; a
changed config is refused. Every process of a multi-host job runs the same command.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mrr_jax.core.backbone import init_heads
from mrr_jax.core.lora import LoraConfig
from mrr_jax.data.fileio import atomic_write_bytes
from mrr_jax.inference.reranker import Reranker
from mrr_jax.inputs.groups import DevGroups, TrainBatch, TrainData
from mrr_jax.runtime import sharding
from mrr_jax.runtime.checkpointing import Checkpointer
from mrr_jax.runtime.distributed import maybe_init_distributed
from mrr_jax.training import step as train_step
from mrr_jax.training.cli import parse, train_parser
from mrr_jax.training.config import check_config, roles_of, training_fingerprint
from mrr_jax.training.data import dev_set, row_aligned, train_data
from mrr_jax.training.dev_eval import eval_batch_queries, evaluate
from mrr_jax.training.state import init_state, lora_config, plan_adapters, save_adapters, to_host
from mrr_jax.weights.adapters import AdapterRole

__all__ = ["TrainingRun", "load_model", "main", "optimizer_step", "prepare", "run"]


# ----------------------------------------------------------------------------- the model
def load_model(c) -> Reranker:
    """The frozen base as a Reranker (random, packaged SmolLM2, HF dir or .gguf) in host memory
    (numpy, ``model.dtype``), with the ``init_adapters`` folded into its weights."""
    from mrr_jax.weights.adapters import load_adapter
    from mrr_jax.weights.assets import smollm2_dir

    m = c.model
    if m.path == "random":
        rr = _random_model(c)
    else:
        path = smollm2_dir() if m.path == "smollm2" else Path(m.path)
        rr = Reranker.from_pretrained(path, start_layer=m.start_layer, yes_token=m.yes_token,
                                      dtype=m.dtype, place=False)
    if m.init_adapters:
        ads = [load_adapter(p, rr.cfg, rr.start_layer) for p in m.init_adapters]
        rr = rr.with_backbone(rr.backbone.folded(ads))
    return rr


def _random_model(c) -> Reranker:
    from mrr_jax.core.config import ModelConfig
    from mrr_jax.core.spec import random_params
    from mrr_jax.inputs.template import load_tokenizer
    from mrr_jax.weights.assets import smollm2_dir

    tok, bos = load_tokenizer(smollm2_dir())
    r = c.model.random
    # The LM head is the embedding (tied): the exit heads start from its "Yes" row.
    cfg = ModelConfig(family="llama", vocab_size=tok.get_vocab_size(), hidden_size=r.hidden_size,
                      intermediate_size=r.intermediate_size, num_layers=r.num_layers,
                      num_heads=r.num_heads, num_kv_heads=r.num_kv_heads, head_dim=r.head_dim,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                      bos_token_id=bos, pad_token_id=0)
    params = random_params(cfg, c.seed)  # core.spec's inits, drawn from default_rng(c.seed)
    yes = tok.encode(c.model.yes_token, add_special_tokens=False).ids[0]
    heads = init_heads(params, yes, cfg.num_layers - c.model.start_layer + 1)
    return Reranker(cfg, params, heads, tokenizer=tok, bos_token_id=bos,
                    start_layer=c.model.start_layer, dtype=c.model.dtype, place=False)


# ----------------------------------------------------------------------------- set-up
@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """Everything fixed for one training run (config ``c`` in ``workdir``): the model ``rr``
    (its backbone sharded over ``mesh``, no adapters), the roles it trains, the data, the
    optimizer, the compiled step and where checkpoints and metrics go."""

    c: Any
    workdir: Path
    resolved: dict[str, Any]  # c.to_dict()
    digest: str  # training_fingerprint(resolved)
    rr: Reranker
    roles: tuple[AdapterRole, ...]
    lcfg: LoraConfig
    mesh: Any
    data: TrainData
    dev: DevGroups | None
    total: int  # optimizer steps
    schedule: Callable
    step_fn: Callable  # jitted train_step
    key: jax.Array
    ckpt: Checkpointer

    @property
    def primary(self) -> bool:
        return jax.process_index() == 0

    def log(self, rec: dict[str, Any]) -> None:
        """Appends one record to ``metrics.jsonl`` (process 0 only)."""
        if self.primary:
            with open(self.workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")


def prepare(c, workdir: Path) -> tuple[TrainingRun, dict]:
    """The run's fixed parts and its fresh state (adapters + optimizer state, sharded)."""
    host = load_model(c)
    spec = train_step.step_spec(c, host)
    roles = tuple(roles_of(c))
    lcfg = lora_config(c)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor)
    n_batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = c.data.queries_per_step * c.data.group_size
    if rows % n_batch_shards:
        raise ValueError(f"queries_per_step x group_size = {rows} rows do not split over "
                         f"data x fsdp = {n_batch_shards} devices")
    data = train_data(c, host)
    total = c.train.steps or (c.train.epochs * data.steps_per_epoch) // c.data.accum
    if total < 1:
        raise ValueError(f"no optimizer steps: {data.num_queries} queries, "
                         f"{c.data.queries_per_step} per micro-batch, accum {c.data.accum}")
    optimizer, schedule = train_step.make_optimizer(
        c.optim.lr, total, int(round(c.optim.warmup_ratio * total)), b1=c.optim.b1,
        b2=c.optim.b2, eps=c.optim.eps, weight_decay=c.optim.weight_decay, clip=c.optim.clip)
    key = jax.random.key(c.seed)
    state, state_sh = init_state(jax.random.fold_in(key, 1), host.backbone, roles, lcfg,
                                 optimizer, mesh)
    rr = host.with_backbone(host.backbone.sharded(mesh))
    step_fn = jax.jit(functools.partial(train_step.train_step, spec=spec, optimizer=optimizer),
                      donate_argnums=(0, 1),
                      out_shardings=(state_sh["trainable"], state_sh["opt_state"], None))
    resolved = c.to_dict()
    job = TrainingRun(
        c=c, workdir=workdir, resolved=resolved, digest=training_fingerprint(resolved), rr=rr,
        roles=roles, lcfg=lcfg, mesh=mesh, data=data,
        dev=dev_set(c, rr) if c.data.dev and c.eval.plans else None, total=total,
        schedule=schedule, step_fn=step_fn, key=key,
        ckpt=Checkpointer(workdir / "checkpoints", keep=c.train.keep))
    return job, state


def resume(job: TrainingRun, state: dict) -> tuple[dict, int]:
    """(state, first step to run): the latest checkpoint's, or ``state`` and 0; a checkpoint
    of another config is refused."""
    if (latest := job.ckpt.latest()) is None:
        return state, 0
    state, meta = job.ckpt.restore(latest, state)
    if meta["config_hash"] != job.digest:
        raise ValueError(f"{job.workdir}: its checkpoints were made with another config "
                         f"(hash {meta['config_hash']}, now {job.digest}); use a new workdir")
    return state, int(meta["step"])


def run_eval(job: TrainingRun, step: int, trainable) -> dict[str, Any] | None:
    """Dev metrics of ``eval.plans`` with the adapters ``trainable`` (logged), or None without
    a dev set. Every process takes part."""
    if job.dev is None:
        return None
    view = job.rr.with_adapters(plan_adapters(to_host(trainable), job.lcfg))
    t0 = time.perf_counter()
    result = evaluate(view, job.dev, list(job.c.eval.plans), eval_batch_queries(job.c))
    job.log({"step": step, "eval": result, "eval_seconds": time.perf_counter() - t0})
    return result


# ----------------------------------------------------------------------------- the loop
def optimizer_step(job: TrainingRun, state: dict, step: int
                   ) -> tuple[dict, dict[str, Any], list[TrainBatch]]:
    """Optimizer step ``step`` (0-based): this process's share of its ``data.accum``
    micro-batches through the compiled step. Returns (state, metrics, micro-batches)."""
    accum = job.c.data.accum
    pid, nproc = jax.process_index(), jax.process_count()
    micro = [job.data.batch(step * accum + a, pid, nproc) for a in range(accum)]
    local = {k: np.stack([row_aligned(m)[k] for m in micro]) for k in train_step.BATCH_KEYS}
    batch = sharding.global_batch(local, job.mesh)
    new_t, new_o, m = job.step_fn(state["trainable"], state["opt_state"], job.rr.params,
                                  job.rr.heads, batch, jax.random.fold_in(job.key, step))
    return {"trainable": new_t, "opt_state": new_o}, m, micro


def step_record(job: TrainingRun, step: int, m: dict[str, Any], micro: list[TrainBatch],
                seconds: float) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of optimizer step ``step`` (0-based) that took
    ``seconds``: loss, lr, gradient norm, loss terms per exit, drawn ratios, throughput."""
    real_tokens = int(sum((b.q_len + b.p_len + b.r_len).sum() for b in micro))
    real_tokens *= jax.process_count()
    padded = job.c.data.queries_per_step * job.c.data.group_size * job.c.data.accum * sum(
        micro[0].shape[1:])
    return {"step": step + 1, "loss": float(m["loss"]), "lr": float(job.schedule(step)),
            "grad_norm": float(m["grad_norm"]),
            "terms": {k: np.asarray(v).round(5).tolist() for k, v in m["terms"].items()},
            "ratios": np.asarray(m["ratios"]).tolist(), "step_seconds": round(seconds, 3),
            "tokens_per_s": round(real_tokens / seconds, 1),
            "padded_tokens_per_s": round(padded / seconds, 1)}


def train_steps(job: TrainingRun, state: dict, start: int, last_eval: dict[str, Any] | None
                ) -> tuple[dict, dict[str, Any] | None]:
    """Steps ``start..total-1``: logging, dev evaluation and checkpoints as configured.
    Returns (state, the last dev evaluation)."""
    t = job.c.train
    bar = _progress(job.total, start, job.primary and t.progress)
    t_last = time.perf_counter()
    for step in range(start, job.total):
        state, m, micro = optimizer_step(job, state, step)
        done = step + 1
        if done % t.log_every == 0 or done == job.total:
            jax.block_until_ready(m)  # the step's time includes its computation
            now = time.perf_counter()
            steps_here = t.log_every if done % t.log_every == 0 else 1
            rec = step_record(job, step, m, micro, (now - t_last) / steps_here)
            t_last = now
            job.log(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
        bar.update(1)
        if t.eval_every and done % t.eval_every == 0 and done != job.total:
            last_eval = run_eval(job, done, state["trainable"])
        if done % t.save_every == 0 or done == job.total:
            job.ckpt.save(done, state, {"step": done, "data_step": done * job.c.data.accum,
                                        "config_hash": job.digest, "config": job.resolved})
    bar.close()
    return state, last_eval


def run(c, workdir: str | Path, distributed: bool = False) -> dict[str, Any]:
    """Trains per config ``c`` (a ConfigDict) in ``workdir``; returns the final summary."""
    check_config(c)
    maybe_init_distributed(distributed)
    workdir = Path(workdir)
    job, state = prepare(c, workdir)
    state, start = resume(job, state)
    if job.primary:
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(workdir / "config.json", (json.dumps(
            {**job.resolved, "config_hash": job.digest}, indent=2, default=str) + "\n").encode())
    first_eval = run_eval(job, 0, state["trainable"]) if start == 0 else None
    state, last_eval = train_steps(job, state, start, first_eval)
    if start < job.total or last_eval is None:
        last_eval = run_eval(job, job.total, state["trainable"])
    job.ckpt.close()
    host = to_host(state["trainable"])
    saved = []
    if job.primary:
        saved = save_adapters(workdir, host, job.lcfg, job.rr.backbone,
                              extra={"config_hash": job.digest, "steps": job.total})
    summary = {"steps": job.total, "resumed_from": start, "first_eval": first_eval,
               "final_eval": last_eval, "adapters": saved}
    if job.primary:
        atomic_write_bytes(workdir / "summary.json",
                           (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _progress(total: int, start: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step",
                file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from mrr_jax.data.errors import DataError

    try:
        c, args = parse(train_parser(__doc__), argv)
        summary = run(c, args.workdir, args.distributed)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary["final_eval"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
