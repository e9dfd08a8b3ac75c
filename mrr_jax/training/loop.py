"""``python -m mrr_jax.train``: Matryoshka training (stage 1 or a stage-2 compensation run).

    python -m mrr_jax.train --config configs/smollm2_135m.py[:ARG] --workdir out/s1 \\
        [--config.train.steps=40 ...] [--distributed]

Writes ``<workdir>/metrics.jsonl`` (one JSON object per logged step: step, loss, loss terms per
exit, learning rate, tokens/s, and ``eval`` records), ``<workdir>/checkpoints/<step>`` (adapters
+ optimizer state + data position + resolved config; orbax, atomic), ``<workdir>/config.json``
and, at the end, ``<workdir>/adapters/<role>`` (loadable with ``Reranker.from_pretrained(...,
adapters=[...])``) and ``<workdir>/summary.json``; prints the final dev evaluation (JSON), or
why there is none and where the adapters are. Every process of a multi-host job runs the same
command.

The same command again:
  - after the run finished: changes nothing, prints where the adapters are, exits 0;
  - after a crash or a stop: resumes from the latest checkpoint and keeps the records of the
    run it continues (metrics.jsonl, the step-0 evaluation in summary.json);
  - with a larger --config.train.steps (or train.epochs): continues the run, finished or not,
    from its latest checkpoint to the new length; the learning-rate schedule (warm-up, linear
    decay to 0) is then that of the new length from there on, so the result differs from a
    fresh run of that length. Fewer steps than the workdir has reached are refused.
  - with any other change but eval.* and train.{log_every, eval_every, progress, save_every,
    keep}: refused before anything is read, naming the settings that differ.
Ctrl-C (SIGINT) or SIGTERM stops at the end of the current step with a checkpoint of it and
exits with 128 + the signal (130, 143): "interrupted at step N; resume with the same command".
A second signal stops at once (resume then starts at the last checkpoint). Exit status 2: a bad
config, override, --workdir or data, in one line.
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
from mrr_jax.inference.adapters import adapter_heads
from mrr_jax.inference.reranker import Reranker
from mrr_jax.inputs.groups import DevGroups, TrainBatch, TrainData
from mrr_jax.runtime import sharding
from mrr_jax.runtime.checkpointing import Checkpointer
from mrr_jax.runtime.distributed import maybe_init_distributed
from mrr_jax.runtime.pyconfig import ConfigError
from mrr_jax.training import step as train_step
from mrr_jax.training import workdir as wd
from mrr_jax.training.cli import check_workdir, parse, train_parser
from mrr_jax.training.config import check_config, check_plans, roles_of, training_fingerprint
from mrr_jax.training.data import dev_set, row_aligned, train_data
from mrr_jax.training.dev_eval import eval_batch_queries, evaluate
from mrr_jax.training.interrupt import Interrupted, StopSignals
from mrr_jax.training.state import init_state, lora_config, plan_adapters, save_adapters, to_host
from mrr_jax.training.throughput import step_record
from mrr_jax.weights.adapters import AdapterRole

__all__ = ["Interrupted", "TrainingRun", "load_model", "main", "optimizer_step", "prepare",
           "run"]


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
                                      no_token=m.no_token, dtype=m.dtype, place=False)
    if m.init_adapters:
        try:  # they must have been trained on this run's heads
            adapter_heads(m.init_adapters, m.no_token)
        except ValueError as e:
            raise ConfigError(f"model.init_adapters: {e}") from None
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
    no = tok.encode(c.model.no_token, add_special_tokens=False).ids[0] if c.model.no_token \
        else None
    heads = init_heads(params, yes, cfg.num_layers - c.model.start_layer + 1, no)
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
    spec: train_step.StepSpec
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
    check_plans(c.eval.plans, host.cfg.num_layers)
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
        b2=c.optim.b2, eps=c.optim.eps, weight_decay=c.optim.weight_decay, clip=c.optim.clip,
        head_lr_scale=c.optim.head_lr_scale)
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
        schedule=schedule, step_fn=step_fn, spec=spec, key=key,
        ckpt=Checkpointer(workdir / "checkpoints", keep=c.train.keep))
    return job, state


def resume(job: TrainingRun, state: dict) -> tuple[dict, int]:
    """(state, first step to run): the latest checkpoint's, or ``state`` and 0. A checkpoint of
    another config (its own record of it, read before its arrays) or beyond the run's length is
    refused."""
    if (latest := job.ckpt.latest()) is None:
        return state, 0
    if latest > job.total:
        raise ConfigError(f"{job.workdir}: its run has reached step {latest}, beyond the "
                          f"{job.total} steps of this config (train.steps / train.epochs); ask "
                          f"for {latest} steps or more, or use another --workdir")
    meta = job.ckpt.meta(latest)
    wd.check_same_run(job.workdir, {**meta["config"], "config_hash": meta["config_hash"]},
                      job.resolved, job.digest)
    state, _ = job.ckpt.restore(latest, state)
    return state, latest


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


def train_steps(job: TrainingRun, state: dict, start: int, stop: StopSignals) -> dict:
    """Steps ``start..total-1``: logging, dev evaluation and checkpoints as configured. A
    signal (``stop``) ends the loop after the current step and its checkpoint with
    :class:`Interrupted`. Returns the state."""
    t = job.c.train
    bar = _progress(job.total, start, job.primary and t.progress)
    t_last = time.perf_counter()
    try:
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
                run_eval(job, done, state["trainable"])
            stopping = stop.requested()
            if done % t.save_every == 0 or done == job.total or stopping:
                save(job, state, done, stop)
            if stopping:
                raise stop.stop(done)
    finally:
        bar.close()
    return state


def save(job: TrainingRun, state: dict, done: int, stop: StopSignals) -> None:
    """The checkpoint of step ``done``; signals meanwhile wait for it to complete."""
    with stop.saving():
        job.ckpt.save(done, state, {"step": done, "data_step": done * job.c.data.accum,
                                    "config_hash": job.digest, "config": job.resolved})
    stop.step = done


def run(c, workdir: str | Path, distributed: bool = False) -> dict[str, Any]:
    """Trains per config ``c`` (a ConfigDict) in ``workdir`` (see the module docstring for
    resuming, extending and stopping); returns the summary: that of ``summary.json``, unchanged,
    when this config's run has already finished there. SIGINT / SIGTERM raise
    :class:`Interrupted` (a ``KeyboardInterrupt``) once the current step is saved."""
    check_config(c)
    workdir = Path(workdir)
    check_workdir(workdir)
    resolved = c.to_dict()
    digest = training_fingerprint(resolved)
    if (done := wd.finished_summary(workdir, digest)) is not None:
        return done
    extended = wd.check_same_run(workdir, wd.read_json(workdir / wd.CONFIG), resolved, digest)
    maybe_init_distributed(distributed)
    with StopSignals() as stop:
        job, state = prepare(c, workdir)
        try:
            return _train(job, state, stop, extended)
        finally:
            job.ckpt.close()


def _train(job: TrainingRun, state: dict, stop: StopSignals, extended: list[str]
           ) -> dict[str, Any]:
    """:func:`run` once the run is set up: resume, the step-0 evaluation (or the one the run
    it continues logged), the steps, the final evaluation, the adapters and the summary."""
    state, start = resume(job, state)
    stop.step = start
    records = wd.kept_records(job.workdir, start)
    if job.primary:
        if extended:
            print(f"{job.workdir}: {', '.join(extended)} changed, continuing from step {start} "
                  f"to {job.total}: the learning-rate schedule is that of {job.total} steps "
                  "from here on", file=sys.stderr)
        job.workdir.mkdir(parents=True, exist_ok=True)
        (job.workdir / wd.SUMMARY).unlink(missing_ok=True)  # an extended run's old summary
        wd.write_json(job.workdir / wd.CONFIG, {**job.resolved, "config_hash": job.digest})
        wd.write_records(job.workdir, records)
    first_eval = run_eval(job, 0, state["trainable"]) if start == 0 else \
        wd.logged_eval(records, 0)
    if stop.requested():
        raise stop.stop(start)
    state = train_steps(job, state, start, stop)
    final_eval = wd.logged_eval(records, job.total)
    if final_eval is None:
        final_eval = run_eval(job, job.total, state["trainable"])
    if stop.requested():
        raise stop.stop(job.total)
    return finish(job, state, start, first_eval, final_eval)


def finish(job: TrainingRun, state: dict, start: int, first_eval: dict[str, Any] | None,
           final_eval: dict[str, Any] | None) -> dict[str, Any]:
    """Saves the adapters and ``summary.json`` (process 0); returns the summary."""
    host = to_host(state["trainable"])
    saved = []
    if job.primary:
        saved = save_adapters(job.workdir, host, job.lcfg, job.rr.backbone,
                              extra={"config_hash": job.digest, "steps": job.total,
                                     "heads": {"yes_token": job.c.model.yes_token,
                                               "no_token": job.c.model.no_token}})
    summary = {"steps": job.total, "resumed_from": start, "first_eval": first_eval,
               "final_eval": final_eval, "adapters": saved, "config_hash": job.digest}
    if job.primary:
        wd.write_json(job.workdir / wd.SUMMARY, summary)
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
        done = wd.finished_summary(args.workdir, training_fingerprint(c.to_dict()))
        if done is not None:
            print(wd.finished_line(c, args.workdir, done))
            return 0
        summary = run(c, args.workdir, args.distributed)
    except Interrupted as e:
        print(e, file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:  # before the handlers are in place
        print(Interrupted(2, None), file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(wd.result_line(c, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
