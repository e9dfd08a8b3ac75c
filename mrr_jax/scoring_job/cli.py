"""``python -m mrr_jax.score``: the scoring job's command line (flags over ``--config`` over
defaults; see :mod:`mrr_jax.scoring_job.job` for what the job does)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from mrr_jax.data.errors import DataError
from mrr_jax.runtime.pyconfig import load_config
from mrr_jax.scoring_job.config import JobConfig, JobError
from mrr_jax.scoring_job.run import run_job


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.score", argument_default=argparse.SUPPRESS,
        description="Re-rank the top-k candidates of a first-stage run under one or more plans; "
                    "sharded, resumable; writes OUT/run.trec (TREC run; with --fuse the fused "
                    "run, and OUT/run.model.trec the model alone).")
    src = p.add_argument_group("inputs")
    src.add_argument("--model", help="HF model directory, .gguf file, or 'smollm2' (the cached "
                     "SmolLM2-135M-Instruct)")
    src.add_argument("--corpus", help="BEIR corpus.jsonl (passage = title + ' ' + text)")
    src.add_argument("--queries", help="BEIR queries.jsonl")
    src.add_argument("--run", help="first-stage TREC run (qid Q0 docid rank score tag)")
    src.add_argument("--candidates", help="candidates JSONL instead of --run/--queries "
                     "(candidates without text are looked up in --corpus)")
    src.add_argument("--top-k", type=int, help="candidates re-ranked per query (default 100)")
    src.add_argument("--max-queries", type=int, help="only the first N queries (qid order)")
    src.add_argument("--on-missing", choices=("error", "warn"),
                     help="unknown ids in the run: error (default) or warn, skip and count")
    src.add_argument("--config", help="settings file: JSON, or a Python config FILE.py[:ARG] "
                     "with get_config(ARG) (keys as the flags, e.g. top_k, plan); flags given "
                     "here override it")
    m = p.add_argument_group("model and plans")
    m.add_argument("--adapters", nargs="+", action="extend", metavar="DIR",
                   help="adapter folders (training's <workdir>/adapters/<role>, or PEFT LoRA "
                   "folders) applied per plan by role; repeatable")
    m.add_argument("--plan", action="append", help='a plan, e.g. "depth=20 compress=8:2"; '
                   "repeat for several ('full' or '' = the whole model, the default); the first "
                   "gives OUT/run.trec")
    m.add_argument("--cascade", help='instead of --plan: plans applied in turn to a shrinking '
                   'candidate list, e.g. "depth=12@100 > full@20" (score the top 100 at depth '
                   "12, then its best 20 with the full model, resuming from layer 12); "
                   "OUT/run.trec is the final order, OUT/cascade.tsv which stage scored each "
                   "document last")
    m.add_argument("--dtype", choices=("float32", "bfloat16"), help="default float32")
    m.add_argument("--compat", choices=("default", "reference"), help="default 'default'")
    m.add_argument("--max-length", type=int, help="query+passage tokens (default 512)")
    m.add_argument("--query-max-length", type=int, help="query tokens (default 3/4 of "
                   "max-length)")
    m.add_argument("--batch-size", type=int, help="rows per batch at most (default 32)")
    m.add_argument("--tokens-per-batch", type=int, help="token budget: rows * padded length "
                   "<= this (length-sorted batches)")
    f = p.add_argument_group("first-stage fusion (off by default)")
    f.add_argument("--fuse", type=float, metavar="WEIGHT",
                   help="rank by (1 - WEIGHT) * model + WEIGHT * first stage, each "
                   "normalised per query (WEIGHT in [0, 1]; the first-stage scores are those of "
                   "--run): OUT/run.trec is then the fused run and OUT/run.model.trec the model "
                   "alone. Choose WEIGHT on dev qrels with python -m mrr_jax.fusion")
    f.add_argument("--fuse-norm", choices=("minmax", "zscore"),
                   help="per-query normalisation of both scores (default minmax)")
    w = p.add_argument_group("long documents (off by default: passages are truncated)")
    w.add_argument("--windows", metavar="AGG[:size=N,stride=N,max_windows=N]",
                   help="score each passage as overlapping windows of its tokens (query and "
                   "prompt repeated in each) and take the max (MaxP), first (FirstP) or mean "
                   "of their scores, e.g. \"max:size=384,stride=192\" (size: passage tokens "
                   "per window, default all that --max-length leaves; stride: default size/2; "
                   "max_windows: cap per document). Window counts: summary.json, "
                   "OUT/windows.tsv")
    j = p.add_argument_group("job")
    j.add_argument("--out", help="output folder: run.trec, summary.json, shards/")
    j.add_argument("--shard", help="i/n: this process scores shard i of n (default: "
                   "jax.process_index()/process_count())")
    j.add_argument("--resume", action="store_true", help="continue the job in --out, skipping "
                   "finished chunks")
    j.add_argument("--merge-only", action="store_true", help="only merge finished shards")
    j.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize "
                   "(also MRR_JAX_DISTRIBUTED=1; JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                   "JAX_PROCESS_ID)")
    j.add_argument("--chunk-pairs", type=int, help="pairs per committed chunk (default 256)")
    j.add_argument("--tag", help="run tag column (default mrr_jax)")
    j.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def parse_config(argv: Sequence[str] | None = None) -> JobConfig:
    """Flags over ``--config`` (JSON or Python ``get_config``) over defaults."""
    args = vars(_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if "config" in args:
        path = args.pop("config")
        values.update(load_config(path).to_dict())  # a bad file: ConfigError, named
        source = str(path)
    else:
        source = "config"
    cfg = JobConfig.from_dict(values, source)
    return dataclasses.replace(cfg, **args)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input or job errors)."""
    try:
        cfg = parse_config(argv)
        out = run_job(cfg)
    except (DataError, JobError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
