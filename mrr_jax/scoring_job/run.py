"""Running one shard of a scoring job: load, check the output folder, lock the shard's folder,
score the shard's unfinished chunks (each committed by its manifest), and merge when every
shard is done."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.core.plan import Plan
from mrr_jax.data.units import Unit
from mrr_jax.runtime.distributed import maybe_init_distributed
from mrr_jax.scoring_job.chunks import (
    Inputs,
    chunk_filename,
    cut_job,
    load_inputs,
    window_filename,
    write_chunk,
    write_window_counts,
)
from mrr_jax.scoring_job.config import JobConfig, JobError, job_fingerprint, parse_shard
from mrr_jax.scoring_job.lock import shard_lock
from mrr_jax.scoring_job.manifest import (
    all_complete,
    check_cut,
    check_done,
    check_out_dir,
    shard_dir,
    write_manifest,
)
from mrr_jax.scoring_job.merge import merge
from mrr_jax.scoring_job.plans import group_plans, resolve_plans
from mrr_jax.scoring_job.scoring import (
    ChunkResult,
    progress_bar,
    score_units,
    score_units_cascade,
)
from mrr_jax.weights.assets import model_path


def load_model(cfg: JobConfig, path: Path | None = None):
    """The job's :class:`~mrr_jax.Reranker` (``smollm2`` = the cached SmolLM2 directory), with
    its ``adapters`` (applied per plan by role)."""
    from mrr_jax.inference.reranker import Reranker

    path = model_path(cfg.model) if path is None else path
    return Reranker.from_pretrained(path, dtype=cfg.dtype, compat=cfg.compat,
                                    adapters=list(cfg.adapters))


def pick_shard(text: str | None) -> tuple[int, int]:
    """``--shard i/n`` if given, else ``jax.process_index()/jax.process_count()``."""
    if text:
        return parse_shard(text)
    import jax

    return jax.process_index(), jax.process_count()


def score_chunk(rr, cfg: JobConfig, plans: Sequence[Plan], units: Sequence[Unit],
                on_batch: Callable[[int], None]) -> ChunkResult:
    """One chunk's scores under every plan (as windows with ``--windows``), or through the
    job's cascade (whose stages' plans ``plans`` are), with the job's batching settings."""
    kw = dict(batch_size=cfg.batch_size, max_length=cfg.max_length,
              query_max_length=cfg.query_max_length, tokens_per_batch=cfg.tokens_per_batch,
              on_batch=on_batch)
    if cfg.cascade is not None:
        return score_units_cascade(rr, units, rr.resolve_cascade(cfg.cascade_text(plans)), **kw)
    return score_units(rr, units, plans, windows=cfg.windows, **kw)


def job_plans(rr, cfg: JobConfig) -> list[Plan]:
    """The job's resolved plans: its ``--plan`` list, or its cascade's stages' plans."""
    if cfg.cascade is not None:
        return list(rr.resolve_cascade(cfg.cascade).plans)
    return resolve_plans([rr.resolve_plan(p) for p in cfg.plan], rr.cfg.num_layers)


def _pairs_to_score(cfg: JobConfig, units: Sequence[Unit], passes: int) -> int:
    """Pairs the job scores for ``units``: each unit's candidates once per pass, or as many as
    each cascade stage keeps."""
    if cfg.cascade is None:
        return sum(len(u.docids) for u in units) * passes
    from mrr_jax.core.cascade import Cascade

    keeps = [s.keep for s in Cascade.parse(cfg.cascade).stages]
    total = 0
    for u in units:
        n = len(u.docids)
        for k in keeps:
            n = n if k is None else min(k, n)
            total += n
    return total


def run_job(config: JobConfig | Mapping[str, Any]) -> Path:
    """Runs (or resumes) this process's shard of a scoring job, and merges once all shards are
    done. Returns the merged run (``OUT/run.trec``) if it was written, else the shard folder.

    The shard folder is locked for the whole run (:func:`~mrr_jax.scoring_job.lock.shard_lock`):
    a second process on the same ``--out`` and shard is refused. Raises :class:`DataError` for
    bad input, ``FileNotFoundError`` for a missing input file, ``ValueError`` for a plan the
    model cannot run and :class:`JobError` for job-level problems."""
    cfg = config if isinstance(config, JobConfig) else JobConfig.from_dict(config)
    cfg.validate()
    out = Path(cfg.out)
    if cfg.merge_only:
        return merge(out, parse_shard(cfg.shard)[1] if cfg.shard else None)
    maybe_init_distributed(cfg.distributed)
    shard, num_shards = pick_shard(cfg.shard)
    for text in cfg.plan:
        Plan.parse(text)  # syntax errors before the slow parts (a cascade's: in validate)
    if out.exists() and not out.is_dir():
        raise JobError(f"--out {out} is a file, not a folder")
    inputs = load_inputs(cfg)
    mpath = model_path(cfg.model)
    rr = load_model(cfg, mpath)
    plans = job_plans(rr, cfg)
    _check_windows(rr, cfg, inputs.units)
    hashed = cfg.hashed(plans, mpath)
    fingerprint = job_fingerprint(hashed)
    chunks, ranges = cut_job(inputs.units, cfg.chunk_pairs, num_shards)

    def check() -> dict[str, Any] | None:
        manifest = check_out_dir(out, shard, num_shards, fingerprint, hashed, cfg.resume)
        check_cut(out, num_shards, len(chunks), ranges)
        return manifest

    check()  # before anything is written
    folder = shard_dir(out, shard, num_shards)
    folder.mkdir(parents=True, exist_ok=True)
    label = f"shard {shard}/{num_shards}" if num_shards > 1 else "score"
    with shard_lock(folder):
        manifest = check()  # again: no other process writes this shard from here on
        if manifest is None:
            manifest = _new_manifest(cfg, plans, hashed, fingerprint, (shard, num_shards),
                                     chunks, ranges[shard], inputs)
        check_done(manifest, chunks, folder)
        manifest["sessions"].append({"started_at": time.time(), "pid": os.getpid()})
        write_manifest(folder, manifest)
        if not manifest["assigned"]:
            print(f"{label}: empty: the job has {len(inputs.units)} queries for {num_shards} "
                  "shards (a query is never split), so this shard has nothing to score",
                  file=sys.stderr)
        _score_shard(rr, cfg, plans, chunks, manifest, folder, label)
        if all_complete(out, num_shards):
            return merge(out, num_shards)
    print(f"{label}: done; waiting for the other shards, then merge (whoever finishes last "
          f"merges, or: python -m mrr_jax.score --merge-only --out {out})", file=sys.stderr)
    return folder


def _check_windows(rr, cfg: JobConfig, units: Sequence[Unit]) -> None:
    """With ``--windows``: the window size fits beside every query of the job (``ValueError``
    naming the query otherwise), checked before anything is scored or written."""
    if cfg.windows is None:
        return
    from mrr_jax.inference.windows import encode_windows

    for u in units:
        try:
            encode_windows(rr, [(u.query, u.passages[0])], cfg.windows, cfg.max_length,
                           cfg.query_max_length)
        except ValueError as e:
            raise ValueError(f"--windows: query {u.qid}: {e}") from None


def _new_manifest(cfg: JobConfig, plans: Sequence[Plan], hashed: Mapping[str, Any],
                  fingerprint: str, shard: tuple[int, int], chunks: Sequence[Sequence[Unit]],
                  mine: range, inputs: Inputs) -> dict[str, Any]:
    """The manifest of a shard that has not started (``mine``: its chunks)."""
    return {
        "config_hash": fingerprint, "config": hashed, "shard": shard[0], "num_shards": shard[1],
        "num_chunks": len(chunks), "assigned": list(mine), "plans": [str(p) for p in plans],
        "plan_args": list(cfg.plan), "done": {}, "sessions": [], "complete": False,
        "pairs": sum(len(u.docids) for k in mine for u in chunks[k]),
        "queries": sum(len(chunks[k]) for k in mine),
        "skipped_entries": inputs.skipped_entries,
        **({"fuse": hashed["fuse"]} if "fuse" in hashed else {}),
        **({"cascade": hashed["cascade"]} if "cascade" in hashed else {}),
        **({"windows": hashed["windows"]} if "windows" in hashed else {}),
    }


def _score_shard(rr, cfg: JobConfig, plans: Sequence[Plan], chunks: Sequence[Sequence[Unit]],
                 manifest: dict[str, Any], folder: Path, label: str) -> None:
    """Scores the shard's unfinished chunks; each chunk's file is written, then the manifest
    listing it (the commit point); finally the manifest is marked complete."""
    passes = len(group_plans(plans))
    todo = [k for k in manifest["assigned"] if str(k) not in manifest["done"]]
    total = _pairs_to_score(cfg, [u for k in manifest["assigned"] for u in chunks[k]], passes)
    left = _pairs_to_score(cfg, [u for k in todo for u in chunks[k]], passes)
    start = time.perf_counter()
    with progress_bar(total, total - left, cfg.progress, label) as bar:
        for k in todo:
            t0 = time.perf_counter()
            result = score_chunk(rr, cfg, plans, chunks[k], bar.update)
            name = chunk_filename(k)
            write_chunk(folder / name, chunks[k], result.runs)
            if result.windows is not None:
                write_window_counts(folder / window_filename(k), chunks[k], result.window_counts)
            manifest["done"][str(k)] = {
                "file": name, "qids": [u.qid for u in chunks[k]], "pairs": result.pairs,
                "truncated": result.truncated, "seconds": time.perf_counter() - t0,
                "finished_at": time.time(),
                **({"stage_pairs": result.stage_pairs} if result.stage_pairs else {}),
                **(_window_entry(result, window_filename(k)) if result.windows else {})}
            write_manifest(folder, manifest)  # the commit point of this chunk
    session_s = time.perf_counter() - start
    manifest["complete"] = True
    manifest["sessions"][-1].update(ended_at=time.time(), seconds=session_s)
    write_manifest(folder, manifest)
    _report_shard(manifest, len(todo), session_s, label)


def _window_entry(result: ChunkResult, name: str) -> dict[str, Any]:
    """A windowed chunk's manifest fields: its windows file, windows scored, documents not
    scored whole, predicted FLOPs of the windows and of truncation (the first plan)."""
    w = result.windows
    return {"windows_file": name, "windows": w.windows, "window_flops": w.flops,
            "truncation_flops": w.truncation_flops}


def _report_shard(manifest: Mapping[str, Any], scored: int, seconds: float, label: str) -> None:
    done = manifest["done"].values()
    truncated = sum(c["truncated"] for c in done)
    pairs = sum(c["pairs"] for c in done)
    if truncated:
        print(f"{label}: {truncated} of {pairs} pairs were truncated to "
              f"max_length (passage cut, prompt kept)", file=sys.stderr)
    if manifest.get("skipped_entries"):
        print(f"{label}: skipped {manifest['skipped_entries']} run entries with unknown ids",
              file=sys.stderr)
    print(f"{label}: {scored} chunk(s) scored this session in {seconds:.1f} s; shard holds "
          f"{manifest['queries']} queries, {manifest['pairs']} pairs", file=sys.stderr)
