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

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mrr_jax.core.lora import Adapter, LoraConfig, fold, init_lora
from mrr_jax.core.plan import Plan
from mrr_jax.inference.reranker import PlanAdapter, Reranker, init_heads
from mrr_jax.runtime import sharding
from mrr_jax.runtime.checkpointing import Checkpointer
from mrr_jax.runtime.pyconfig import load_config_dict
from mrr_jax.training import step as train_step
from mrr_jax.training.config import STAGES


# ----------------------------------------------------------------------------- set-up
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
        rr.params, rr.heads = fold(rr.params, rr.heads, ads)
    return rr


def _random_model(c) -> Reranker:
    from mrr_jax.core.config import ModelConfig
    from mrr_jax.inputs.template import load_tokenizer
    from mrr_jax.weights.assets import smollm2_dir

    tok, bos = load_tokenizer(smollm2_dir())
    r = c.model.random
    cfg = ModelConfig(family="llama", vocab_size=tok.get_vocab_size(), hidden_size=r.hidden_size,
                      intermediate_size=r.intermediate_size, num_layers=r.num_layers,
                      num_heads=r.num_heads, num_kv_heads=r.num_kv_heads, head_dim=r.head_dim,
                      rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=bos, pad_token_id=0)
    rng = np.random.default_rng(c.seed)
    d, f, n, k, h, L = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                        cfg.num_kv_heads, cfg.head_dim, cfg.num_layers)

    def w(*shape, fan_in):
        return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)

    layers = {"q": w(L, d, n, h, fan_in=d), "k": w(L, d, k, h, fan_in=d),
              "v": w(L, d, k, h, fan_in=d), "o": w(L, n, h, d, fan_in=n * h),
              "gate": w(L, d, f, fan_in=d), "up": w(L, d, f, fan_in=d),
              "down": w(L, f, d, fan_in=f),
              "attn_norm": np.ones((L, d), np.float32), "mlp_norm": np.ones((L, d), np.float32)}
    params = {"embed": w(cfg.vocab_size, d, fan_in=1), "final_norm": np.ones(d, np.float32),
              "layers": layers}
    yes = tok.encode(c.model.yes_token, add_special_tokens=False).ids[0]
    heads = init_heads(params, yes, L - c.model.start_layer + 1)
    return Reranker(cfg, params, heads, tokenizer=tok, bos_token_id=bos,
                    start_layer=c.model.start_layer, dtype=c.model.dtype, place=False)


def data_paths(spec: str) -> list[Path]:
    """``a.jsonl,b.jsonl`` or ``example:<split>`` (the stdlib example set, built once into
    ``~/.cache/mrr_jax/example``)."""
    if spec.startswith("example:"):
        from mrr_jax.data.example import build

        root = Path(os.environ.get("MRR_JAX_EXAMPLE_DIR",
                                   Path.home() / ".cache" / "mrr_jax" / "example"))
        f = root / f"{spec.split(':', 1)[1]}.jsonl"
        if not f.is_file():
            build(root)
        return [f]
    return [Path(p) for p in spec.split(",") if p]


def roles_of(c, ratios: tuple[int, ...]) -> list[str]:
    """The adapters a stage trains (see ``mrr_jax.training.config``)."""
    hs = [f"h{r}" for r in ratios if r > 1]
    if c.stage == "stage1":
        return ["stage1"]
    if c.stage == "vertical":
        return ["vertical"]
    if c.stage == "horizontal":
        if not hs:
            raise ValueError("stage 'horizontal' needs compress.ratios with a ratio > 1")
        return hs
    return ["vertical", *hs]


def step_spec(c, rr: Reranker) -> train_step.StepSpec:
    L = rr.cfg.num_layers
    ratios = tuple(int(r) for r in c.compress.ratios)
    if c.stage == "vertical":
        ratios = (1,)
    elif c.stage == "joint":
        ratios = tuple(sorted({1, *ratios}))
    candidates = tuple(c.compress.layers) or tuple(range(4, L, 4))
    bad = [x for x in candidates if not 1 <= x < L]
    if bad:
        raise ValueError(f"compress.layers {bad} must be within 1..{L - 1}")
    every = c.loss.anchor_every
    anchors = tuple(sorted({*range(every, L, every), L}))
    weights = (("ce", c.loss.ce), ("teacher", c.loss.external), ("self", c.loss.self))
    return train_step.StepSpec(
        cfg=rr.cfg, start_layer=rr.start_layer, group_size=c.data.group_size, ratios=ratios,
        candidates=candidates, compress_prob=c.compress.prob, mode=c.compress.mode,
        loss_exits=c.loss.exits, anchors=anchors, teacher_kind=c.loss.teacher,
        temperature=c.loss.temperature, weights=weights, lora_scale=c.lora.alpha / c.lora.rank,
        lora_dropout=c.lora.dropout, remat=c.train.remat, dtype=c.model.dtype)


def config_hash(resolved: dict[str, Any]) -> str:
    """Hash of the settings that change the result (not logging/eval/progress)."""
    keep = {k: v for k, v in resolved.items() if k != "eval"}
    keep["train"] = {k: v for k, v in resolved["train"].items()
                     if k not in ("log_every", "eval_every", "progress", "save_every", "keep")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- evaluation
def eval_plan(text: str, num_layers: int) -> Plan:
    """An ``eval.plans`` entry ("full" or plan syntax) resolved for a model of ``num_layers``."""
    return Plan.parse("" if text == "full" else text).resolve(num_layers)


def dev_set(c, rr: Reranker):
    """The config's dev groups (``data.dev``; ``eval.max_queries`` queries of
    ``eval.group_size`` candidates), tokenized as in training."""
    from mrr_jax.inputs.groups import dev_groups

    return dev_groups(data_paths(c.data.dev)[0], rr.tokenizer, rr.bos_token_id,
                      group_size=c.eval.group_size, max_queries=c.eval.max_queries,
                      seed=c.seed, query_max_len=c.data.query_max_len,
                      passage_max_len=c.data.passage_max_len, prompt=rr.prompt,
                      pad_id=rr.cfg.pad_token_id or 0)


def eval_batch_queries(c) -> int:
    """Dev queries per scoring batch (``eval.batch_size`` rows)."""
    return max(1, c.eval.batch_size // c.eval.group_size)


def plan_scores(rr: Reranker, dev, plan: Plan, batch_queries: int) -> np.ndarray:
    """Scores [Qd, G] of the dev groups under ``plan`` (its last exit), with ``rr``'s adapters
    for that plan."""
    from mrr_jax.core.forward import score_forward

    g = dev.batch.group_size
    scores = []
    for chunk, real in dev.chunks(batch_queries):
        a = {k: jnp.asarray(v) for k, v in chunk.arrays().items()
             if k not in ("teacher", "teacher_mask")}
        s = score_forward(rr.params, rr.heads, **a, padded_length=jnp.int32(0),
                          adapters=rr.adapters_for(plan), cfg=rr.cfg, plan=plan,
                          exits=(plan.depth,), start_layer=rr.start_layer)
        scores.append(np.asarray(s[0]).reshape(-1, g)[:real])
    return np.concatenate(scores)


def dev_metrics(dev, s: np.ndarray) -> dict[str, np.ndarray]:
    """Per dev query (in dev order): ``rr`` (RR@10 of the positive) and ``loss`` (its
    contrastive CE, -log softmax of the positive) from scores [Qd, G]."""
    from mrr_jax.evaluation.evaluate import evaluate_per_query

    s = np.asarray(s, np.float64)
    top = s.max(1, keepdims=True)
    logp = s - top - np.log(np.exp(s - top).sum(1, keepdims=True))
    per_query = evaluate_per_query(dev.run(s), dev.qrels(), ["RR@10"])
    return {"rr": np.array([per_query[q]["RR@10"] for q in dev.qids]), "loss": -logp[:, 0]}


def evaluate(rr: Reranker, dev, plans: Sequence[str], batch_queries: int) -> dict[str, Any]:
    """Dev MRR@10 and contrastive loss (at the plan's last exit) per plan, with ``rr``'s
    adapters; the positive of each dev group is the only relevant candidate."""
    out: dict[str, Any] = {}
    for text in plans:
        m = dev_metrics(dev, plan_scores(rr, dev, eval_plan(text, rr.cfg.num_layers),
                                         batch_queries))
        out[text] = {"mrr@10": float(m["rr"].mean()), "loss": float(m["loss"].mean())}
    return out


# ----------------------------------------------------------------------------- the loop
def init_state(key: jax.Array, rr: Reranker, roles: Sequence[str], lcfg: LoraConfig,
               optimizer, mesh) -> tuple[dict, dict]:
    """Fresh adapters {role: tree} and their optimizer state, sharded over ``mesh``; also
    moves ``rr``'s base and heads onto the mesh. Returns (state, state shardings)."""
    keys = jax.random.split(key, len(roles))
    trainable = {role: init_lora(k, rr.params, rr.heads, lcfg) for role, k in zip(roles, keys)}
    rr.params = sharding.put(rr.params, sharding.tree_shardings(rr.params, mesh))
    rr.heads = jax.device_put(rr.heads, sharding.tree_shardings({"heads": rr.heads},
                                                                mesh)["heads"])
    state = {"trainable": trainable, "opt_state": optimizer.init(trainable)}
    state_sh = sharding.tree_shardings(state, mesh)
    return sharding.put(state, state_sh), state_sh


def to_host(tree):
    """Numpy copies of (possibly multi-host sharded) arrays, the same on every process."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def run(c, workdir: str | Path, distributed: bool = False) -> dict[str, Any]:
    """Trains per config ``c`` (a ConfigDict) in ``workdir``; returns the final summary."""
    from mrr_jax.data.fileio import atomic_write_bytes
    from mrr_jax.inputs.groups import TrainData
    from mrr_jax.scoring_job.job import maybe_init_distributed
    from mrr_jax.weights.adapters import save_adapter

    if c.stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {c.stage!r}")
    maybe_init_distributed(distributed)
    workdir = Path(workdir)
    pid, nproc = jax.process_index(), jax.process_count()
    primary = pid == 0
    resolved = c.to_dict()
    digest = config_hash(resolved)

    rr = load_model(c)
    spec = step_spec(c, rr)
    roles = roles_of(c, tuple(c.compress.ratios))
    lcfg = LoraConfig(rank=c.lora.rank, alpha=c.lora.alpha, dropout=c.lora.dropout,
                      targets=tuple(c.lora.targets))
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor)
    n_batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = c.data.queries_per_step * c.data.group_size
    if rows % n_batch_shards:
        raise ValueError(f"queries_per_step x group_size = {rows} rows do not split over "
                         f"data x fsdp = {n_batch_shards} devices")

    data = TrainData(data_paths(c.data.train), rr.tokenizer, rr.bos_token_id,
                     global_batch=c.data.queries_per_step, group_size=c.data.group_size,
                     seed=c.seed, query_max_len=c.data.query_max_len,
                     passage_max_len=c.data.passage_max_len, prompt=rr.prompt,
                     pad_id=rr.cfg.pad_token_id or 0,
                     passage_buckets=tuple(c.data.passage_buckets) or None)
    accum = c.data.accum
    total = c.train.steps or (c.train.epochs * data.steps_per_epoch) // accum
    if total < 1:
        raise ValueError(f"no optimizer steps: {data.num_queries} queries, "
                         f"{c.data.queries_per_step} per micro-batch, accum {accum}")
    warmup = int(round(c.optim.warmup_ratio * total))
    optimizer, schedule = train_step.make_optimizer(
        c.optim.lr, total, warmup, b1=c.optim.b1, b2=c.optim.b2, eps=c.optim.eps,
        weight_decay=c.optim.weight_decay, clip=c.optim.clip)

    key = jax.random.key(c.seed)
    state, state_sh = init_state(jax.random.fold_in(key, 1), rr, roles, lcfg, optimizer, mesh)
    base, heads = rr.params, rr.heads

    ckpt = Checkpointer(workdir / "checkpoints", keep=c.train.keep)
    start = 0
    if (latest := ckpt.latest()) is not None:
        state, meta = ckpt.restore(latest, state)
        if meta["config_hash"] != digest:
            raise ValueError(f"{workdir}: its checkpoints were made with another config "
                             f"(hash {meta['config_hash']}, now {digest}); use a new workdir")
        start = int(meta["step"])
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(workdir / "config.json", (json.dumps(
            {**resolved, "config_hash": digest}, indent=2, default=str) + "\n").encode())

    step_fn = jax.jit(functools.partial(train_step.train_step, spec=spec, optimizer=optimizer),
                      donate_argnums=(0, 1),
                      out_shardings=(state_sh["trainable"], state_sh["opt_state"], None))

    dev = dev_set(c, rr) if c.data.dev and c.eval.plans else None

    def run_eval(step: int, trainable) -> dict[str, Any] | None:
        if dev is None:
            return None
        host = to_host(trainable)
        view = Reranker.__new__(Reranker)
        view.__dict__.update(rr.__dict__, adapters=tuple(
            PlanAdapter(Adapter(t, lcfg.scale, 0.0), *_role_meta(role))
            for role, t in host.items()))
        t0 = time.perf_counter()
        result = evaluate(view, dev, list(c.eval.plans), eval_batch_queries(c))
        rec = {"step": step, "eval": result, "eval_seconds": time.perf_counter() - t0}
        log(rec)
        return result

    metrics_path = workdir / "metrics.jsonl"

    def log(rec: dict[str, Any]) -> None:
        if primary:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    if start == 0:
        first_eval = run_eval(0, state["trainable"])
    else:
        first_eval = None
    bar = _progress(total, start, primary and c.train.progress)
    tokens_per_step = rows * accum
    last_eval = first_eval
    t_last = time.perf_counter()
    for step in range(start, total):
        micro = [data.batch(step * accum + a, pid, nproc) for a in range(accum)]
        local = {k: np.stack([_row_aligned(m)[k] for m in micro]) for k in
                 train_step.BATCH_KEYS}
        batch = sharding.global_batch(local, mesh)
        real_tokens = int(sum((m.q_len + m.p_len + m.r_len).sum() for m in micro)) * nproc
        new_t, new_o, m = step_fn(state["trainable"], state["opt_state"], base, heads, batch,
                                  jax.random.fold_in(key, step))
        state = {"trainable": new_t, "opt_state": new_o}
        done = step + 1
        if done % c.train.log_every == 0 or done == total:
            loss = float(m["loss"])
            now = time.perf_counter()
            steps_here = c.train.log_every if done % c.train.log_every == 0 else 1
            dt = (now - t_last) / steps_here
            t_last = now
            log({"step": done, "loss": loss, "lr": float(schedule(step)),
                 "grad_norm": float(m["grad_norm"]),
                 "terms": {k: np.asarray(v).round(5).tolist() for k, v in m["terms"].items()},
                 "ratios": np.asarray(m["ratios"]).tolist(), "step_seconds": round(dt, 3),
                 "tokens_per_s": round(real_tokens / dt, 1),
                 "padded_tokens_per_s": round(tokens_per_step * sum(
                     micro[0].shape[1:]) / dt, 1)})
            bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)
        if throttle := os.environ.get("MRR_JAX_TRAIN_THROTTLE"):  # tests: widen kill windows
            time.sleep(float(throttle))
        if c.train.eval_every and done % c.train.eval_every == 0 and done != total:
            last_eval = run_eval(done, state["trainable"])
        if done % c.train.save_every == 0 or done == total:
            ckpt.save(done, state, {"step": done, "data_step": done * accum,
                                    "config_hash": digest, "config": resolved})
    bar.close()
    if start < total or last_eval is None:
        last_eval = run_eval(total, state["trainable"])
    ckpt.close()
    host = to_host(state["trainable"])
    saved = []
    if primary:
        for role, tree in host.items():
            r, ratio = _role_meta(role)
            saved.append(str(save_adapter(workdir / "adapters" / role, tree, lcfg, rr.cfg,
                                          rr.start_layer, role=r, ratio=ratio,
                                          extra={"config_hash": digest, "steps": total})))
    summary = {"steps": total, "resumed_from": start, "first_eval": first_eval,
               "final_eval": last_eval, "adapters": saved}
    if primary:
        atomic_write_bytes(workdir / "summary.json",
                           (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _role_meta(role: str) -> tuple[str, int | None]:
    if role.startswith("h"):
        return "horizontal", int(role[1:])
    return role, None


def _row_aligned(b) -> dict[str, np.ndarray]:
    """Batch arrays with the teacher per row ([Q, G] -> [R]) so every array shards by rows."""
    a = b.arrays()
    g = b.group_size
    a["teacher"] = a["teacher"].reshape(-1)
    a["teacher_mask"] = np.repeat(a["teacher_mask"], g)
    return a


def _progress(total: int, start: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step",
                file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- CLI
def config_parser(prog: str, description: str | None, workdir_help: str
                  ) -> argparse.ArgumentParser:
    """``--config configs/NAME.py[:ARG] --workdir DIR``; :func:`parse` adds the overrides."""
    p = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any setting of mrr_jax/train_config.py can be changed with "
               "--config.KEY=VALUE (e.g. --config.train.steps=20 --config.mesh.fsdp=4).")
    p.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
    p.add_argument("--workdir", required=True, type=Path, help=workdir_help)
    return p


def _parser() -> argparse.ArgumentParser:
    p = config_parser("python -m mrr_jax.train", __doc__,
                      "checkpoints, metrics.jsonl, adapters/")
    p.add_argument("--distributed", action="store_true", help="jax.distributed.initialize() "
                   "(also MRR_JAX_DISTRIBUTED=1)")
    return p


def parse(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None):
    """(config with ``--config.KEY=VALUE`` overrides, args) from ``parser`` (the trainer's by
    default)."""
    parser = parser or _parser()
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r}")
        overrides.append(item[len("--config."):])
    return load_config_dict(args.config, overrides), args


def main(argv: Sequence[str] | None = None) -> int:
    from mrr_jax.data.errors import DataError

    try:
        c, args = parse(argv)
        summary = run(c, args.workdir, args.distributed)
    except (DataError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary["final_eval"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
