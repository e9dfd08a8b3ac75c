"""The offline scoring job: re-rank the top-k candidates of a first-stage run under one or more
plans, sharded over processes or hosts, resumable, writing TREC runs.

Command line (``python -m mrr_jax.score --help`` for every flag)::

    python -m mrr_jax.score --model DIR|FILE.gguf|smollm2 [--adapters DIR [DIR ...]] \\
        --corpus corpus.jsonl --queries queries.jsonl --run first_stage.trec \\
        [--candidates cands.jsonl] --top-k 100 --plan "depth=20 compress=8:2" [--plan ...] \\
        --out OUT [--shard i/n] [--resume] [--merge-only] [--config job.json]

``--adapters``: folders written by training (``<workdir>/adapters/<role>``) or PEFT LoRA
folders, applied per plan by role (stage-1 and vertical to every plan, horizontal H(r) to plans
compressing with ratio r; see :meth:`mrr_jax.Reranker.adapters_for`). Their contents are part of
the job's configuration hash, so ``--resume`` with other adapters is refused.

How the work is cut, and why the output does not depend on it:

- A *unit* is one query and its top-k candidates (``mrr_jax.data.trec.ranking`` order). Units
  are sorted by qid (:func:`mrr_jax.data.trec.qid_key`) and grouped, in that order, into
  global *chunks* of about ``--chunk-pairs`` pairs (a query is never split). Shards are
  balanced by pairs (:func:`~mrr_jax.scoring_job.chunks.cut_job`): with ``P`` pairs, shard
  ``i`` of ``n`` starts at the chunk boundary nearest ``i*P/n``. Batches are formed inside a
  chunk only (length-sorted, at most ``--batch-size`` rows and, with ``--tokens-per-batch``,
  ``rows * padded length <= budget``), so every pair meets the same batch whatever ``n`` is and
  the merged run is byte-identical for any number of shards -- as long as each shard's share
  ``P/n`` holds at least ``--chunk-pairs`` pairs and there are at least ``n`` chunks. A
  smaller job is cut at the query boundaries
  nearest ``i*P/n`` (its chunks split), so that every shard gets work; scores then may differ
  from a one-shard run in the last digits (a pair's score depends on its batch's padded shape
  only through float rounding: at most 4e-5 on logits up to 13, measured on 40 pairs with
  SmolLM2-135M in float32, chunks of 5 against 256 pairs and batches of 1, 5 and 256). A
  shard is empty only when the job has fewer queries than shards; it says so.
- One process per shard: the shard's folder is locked (``fcntl.flock`` on
  ``OUT/shards/<i>-of-<n>/.lock``) while a process scores it; a second process on the same
  ``--out`` and shard (say, ``--resume`` while the first still runs) is refused, naming the
  holder's pid. The kernel drops the lock of a process that died, so a killed job resumes.
- After each chunk, its scores go to ``OUT/shards/<i>-of-<n>/chunk-<k>.trec`` (tag column
  ``p<j>``: the j-th plan) through a temporary file and ``os.replace``; then the shard's
  ``manifest.json`` -- the commit point -- is rewritten the same way, listing the finished
  chunks, their qids, and the hash of the job's configuration (its fingerprint). A kill at any
  moment leaves at worst an unlisted chunk file, which ``--resume`` scores again and
  overwrites: nothing is lost or counted twice. ``--resume`` refuses a manifest whose
  fingerprint differs.
- Several plans run as few passes as possible: a plan whose schedule equals a deeper plan's
  schedule below its own depth is read off that plan's pass as an extra exit (so ``depth=12``,
  ``depth=20`` and ``full`` cost one full pass); other schedules get passes of their own.
- With ``--windows AGG[:size=N,stride=N,max_windows=N]`` (off by default) each pair is scored
  as overlapping windows of its passage tokens, aggregated per document
  (:mod:`mrr_jax.inference.windows`); the windows of a chunk share its batches, so sharding
  is unchanged. The setting is part of the fingerprint (``--resume`` with another is refused);
  each chunk's window counts go beside it, ``OUT/windows.tsv`` and the ``windows`` block of
  ``summary.json`` record them with their predicted FLOPs against truncation.
- When the last shard finishes (or with ``--merge-only``), the chunks are merged into
  ``OUT/run.trec`` (the first plan) and, with several plans, ``OUT/run.<plan>.trec`` for each,
  plus ``OUT/summary.json``.

Multi-host: with ``--distributed`` (or ``MRR_JAX_DISTRIBUTED=1``) ``jax.distributed.initialize``
is called (coordinator, process count and id from ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when set); whenever ``jax.process_count() > 1`` and
no ``--shard`` is given, the shard is ``process_index/process_count``.

The modules (this one gathers their public names):

- :mod:`~mrr_jax.scoring_job.config` -- :class:`JobConfig`, :class:`JobError`, the fingerprint;
- :mod:`~mrr_jax.scoring_job.plans` -- plans grouped into passes, plan file names;
- :mod:`~mrr_jax.scoring_job.scoring` -- scoring units under plans, :func:`rerank` in memory;
- :mod:`~mrr_jax.scoring_job.chunks` -- inputs, chunks, shards, chunk files;
- :mod:`~mrr_jax.scoring_job.manifest` -- shard manifests and the output-folder checks;
- :mod:`~mrr_jax.scoring_job.lock` -- one process per shard folder;
- :mod:`~mrr_jax.scoring_job.merge` -- merging shards into runs and ``summary.json``;
- :mod:`~mrr_jax.scoring_job.run` -- :func:`run_job`, one shard from start to merge;
- :mod:`~mrr_jax.scoring_job.cli` -- the command line (:func:`main`, :func:`parse_config`).
"""

from __future__ import annotations

from mrr_jax.core.plan import Plan
from mrr_jax.data.units import Unit, units_from_run
from mrr_jax.scoring_job.chunks import (
    Inputs,
    chunk_units,
    cut_job,
    load_inputs,
    read_chunk,
    write_chunk,
)
from mrr_jax.scoring_job.cli import main, parse_config
from mrr_jax.scoring_job.config import (
    FORMAT_VERSION,
    JobConfig,
    JobError,
    job_fingerprint,
    parse_shard,
)
from mrr_jax.scoring_job.lock import LOCK, shard_lock
from mrr_jax.scoring_job.manifest import (
    MANIFEST,
    all_complete,
    check_cut,
    check_out_dir,
    read_manifest,
    shard_dir,
    write_manifest,
)
from mrr_jax.scoring_job.merge import merge
from mrr_jax.scoring_job.plans import Pass, group_plans, plan_filename, resolve_plans
from mrr_jax.scoring_job.run import load_model, pick_shard, run_job
from mrr_jax.scoring_job.scoring import ChunkResult, rerank, score_pass, score_units
from mrr_jax.weights.assets import SMOLLM2, model_path

parse_plan = Plan.parse  # the one rule for plan text ("full" and "" are the full model)

__all__ = [
    "FORMAT_VERSION", "LOCK", "MANIFEST", "SMOLLM2", "ChunkResult", "Inputs", "JobConfig",
    "JobError", "Pass", "Unit", "all_complete", "check_cut", "check_out_dir", "chunk_units",
    "cut_job", "group_plans", "job_fingerprint", "load_inputs", "load_model", "main", "merge",
    "model_path", "parse_config", "parse_plan", "parse_shard", "pick_shard", "plan_filename",
    "read_chunk", "read_manifest", "rerank", "resolve_plans", "run_job", "score_pass",
    "score_units", "shard_dir", "shard_lock", "units_from_run", "write_chunk",
    "write_manifest",
]

if __name__ == "__main__":
    raise SystemExit(main())
