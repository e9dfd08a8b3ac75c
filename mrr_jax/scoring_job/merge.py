"""Merging finished shards: ``OUT/run.trec`` (the first plan), ``OUT/run.<plan>.trec`` for each
plan when there are several, and ``OUT/summary.json``.

With ``--fuse`` (the manifests' ``config["fuse"]``: ``{weight, norm}``) the model's scores are
fused with the first stage's (those of ``--run``, re-read here and checked against the job's
fingerprint of it; :func:`mrr_jax.data.fusion.fuse_run` over each query's candidates):
``OUT/run.trec`` is the first plan fused and ``OUT/run.model.trec`` the first plan alone (what
``OUT/run.trec`` is without ``--fuse``); with several plans each also gets
``OUT/run.<plan>.fused.trec`` beside its model-alone ``OUT/run.<plan>.trec``.

With ``--cascade`` the chunks hold one run per stage (the documents each stage scored last);
``OUT/run.trec`` is the cascade's final order and ``OUT/cascade.tsv`` says which stage scored
each document last (:func:`_write_cascade`).

With ``--windows`` every pair was scored as windows aggregated per document; ``OUT/windows.tsv``
says how many windows each pair took, and ``summary.json``'s ``windows`` block sums them
(:func:`_window_summary`).

Every chunk of the job must be finished exactly once, by shards of one shard count and one job
fingerprint; else :class:`~mrr_jax.scoring_job.config.JobError`. Files are written under a name
private to this process and renamed, so two shards merging at the same moment cannot interleave.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.core.plan import Plan
from mrr_jax.data import trec
from mrr_jax.data.fileio import atomic_write
from mrr_jax.data.fusion import fuse_run
from mrr_jax.data.records import Run
from mrr_jax.scoring_job.chunks import read_chunk
from mrr_jax.scoring_job.config import JobError, input_fingerprint
from mrr_jax.scoring_job.manifest import read_manifest, shard_dir, shard_dirs
from mrr_jax.scoring_job.plans import group_plans, plan_filename


def merge(out: Path, num_shards: int | None = None) -> Path:
    """Merges complete shards into ``OUT/run.trec`` (+ one run per plan, + the model-alone and
    fused runs with ``--fuse``; see the module docstring) and ``summary.json``.

    ``num_shards``: which shard count to merge (default: the one found under ``OUT/shards``).
    Every chunk of the job must be finished exactly once, else :class:`JobError`."""
    if num_shards is None:
        num_shards = _only_shard_count(out)
    manifests = _complete_manifests(out, num_shards)
    plans = manifests[0]["plans"]
    runs = _merged_runs(out, num_shards, manifests)
    config = manifests[0]["config"]
    tag = config["tag"]
    if config.get("cascade"):
        names = {"cascade": _write_cascade(out, runs, tag)}
        _write_summary(out, manifests, names)
        print(f"merged {num_shards} shard(s): {len(set().union(*runs))} queries -> "
              f"{out / 'run.trec'}, {out / 'cascade.tsv'}", file=sys.stderr)
        return out / "run.trec"
    fused = _fused_runs(runs, config) if config.get("fuse") else None
    names = {}
    for j, plan in enumerate(plans):
        targets = _targets(j, plan, len(plans) > 1, fused is not None)
        for name, is_fused in targets:
            _write_run_atomic(out / name, fused[j] if is_fused else runs[j], tag)
        names[plan] = [name for name, _ in targets]
    if config.get("windows"):
        _write_window_counts(out, num_shards, manifests)
    _write_summary(out, manifests, names)
    print(f"merged {num_shards} shard(s): {sum(len(r) for r in runs[:1])} queries -> "
          + ", ".join(str(out / n) for n in dict.fromkeys(x for v in names.values() for x in v)),
          file=sys.stderr)
    return out / "run.trec"


def _targets(j: int, plan: str, several: bool, fused: bool) -> list[tuple[str, bool]]:
    """``(file name, fused?)`` of plan ``j``'s runs."""
    out = ([("run.trec", True), ("run.model.trec", False)] if fused else [("run.trec", False)]
           ) if j == 0 else []
    if several:
        out.append((f"run.{plan_filename(plan)}.trec", False))
        if fused:
            out.append((f"run.{plan_filename(plan)}.fused.trec", True))
    return out


def _write_cascade(out: Path, stage_runs: Sequence[Run], tag: str) -> list[str]:
    """A cascade job's outputs from its per-stage runs: ``run.trec``, the final order (the
    score column counts down from the number of documents ranked, so that any TREC tool reads
    the cascade's order: scores of different stages are not comparable) and ``cascade.tsv``
    (``qid, docid, rank, stage, score``: which stage scored each document last, and its
    score there)."""
    from mrr_jax.scoring_job.scoring import cascade_order

    qids = sorted(set().union(*stage_runs))
    final: Run = {}
    tsv = path_private(out / "cascade.tsv")
    with atomic_write(tsv) as f:
        f.write("qid\tdocid\trank\tstage\tscore\n")
        for qid in qids:
            order = cascade_order(stage_runs, qid)
            final[qid] = {d: float(len(order) - i) for i, (d, _, _) in enumerate(order)}
            for i, (d, stage, score) in enumerate(order, start=1):
                f.write(f"{qid}\t{d}\t{i}\t{stage}\t{score!r}\n")
    os.replace(tsv, out / "cascade.tsv")
    _write_run_atomic(out / "run.trec", final, tag)
    return ["run.trec", "cascade.tsv"]


def _write_window_counts(out: Path, num_shards: int,
                         manifests: Sequence[Mapping[str, Any]]) -> None:
    """``OUT/windows.tsv`` (``qid, docid, windows``: how many windows each pair was scored
    as), the chunks' window files in chunk order (qid order, then first-stage order)."""
    parts = sorted((k, shard_dir(out, i, num_shards) / m["done"][str(k)]["windows_file"])
                   for i, m in enumerate(manifests) for k in m["assigned"])
    path = path_private(out / "windows.tsv")
    with atomic_write(path) as f:
        f.write("qid\tdocid\twindows\n")
        for _, part in parts:
            f.write(part.read_text())
    os.replace(path, out / "windows.tsv")


def _window_summary(config: Mapping[str, Any], chunks: Sequence[Mapping[str, Any]],
                    plan: str) -> dict[str, Any]:
    """The windows block of ``summary.json``: the setting, documents (pairs), windows scored,
    windows per document, documents not scored whole, and the predicted FLOPs of the windows
    against truncation under the first ``plan``."""
    docs = sum(c["pairs"] for c in chunks)
    windows = sum(c["windows"] for c in chunks)
    flops = math.fsum(c["window_flops"] for c in chunks)
    trunc = math.fsum(c["truncation_flops"] for c in chunks)
    return {"spec": config["windows"], "documents": docs, "windows": windows,
            "mean_windows": windows / docs if docs else 0.0,
            "cut": sum(c["truncated"] for c in chunks), "plan": plan, "flops": flops,
            "truncation_flops": trunc, "relative_flops": flops / trunc if trunc else 1.0,
            "file": "windows.tsv"}


def path_private(path: Path) -> Path:
    """A name private to this process beside ``path`` (written, then renamed over it)."""
    return path.with_name(f".{path.name}.{os.getpid()}")


def _fused_runs(runs: Sequence[Run], config: Mapping[str, Any]) -> list[Run]:
    """Each plan's run fused with the first stage's scores (``config["fuse"]``), read from the
    job's ``--run`` file, which must be the one the job was started with."""
    spec = config["inputs"].get("run")
    if spec is None:
        raise JobError("--fuse needs the first-stage scores of --run; this job has no --run")
    if input_fingerprint(spec["path"]) != spec:
        raise JobError(f"{spec['path']}: the first-stage run is missing or changed since the "
                       "job started; --fuse reads its scores when merging, so restore it")
    first = trec.load_run(spec["path"])
    fuse = config["fuse"]
    return [fuse_run(run, first, fuse["weight"], fuse["norm"]) for run in runs]


def _only_shard_count(out: Path) -> int:
    counts = sorted({n for _, n in shard_dirs(out)})
    if len(counts) != 1:
        raise JobError(f"{out}: no shards to merge" if not counts else
                       f"{out}: shards of several shard counts {counts}; say which with "
                       "--shard 0/N")
    return counts[0]


def _complete_manifests(out: Path, num_shards: int) -> list[dict[str, Any]]:
    """The manifests of all ``num_shards`` shards: complete, of one job, covering every chunk
    exactly once."""
    manifests = []
    for i in range(num_shards):
        m = read_manifest(shard_dir(out, i, num_shards))
        if m is None or not m.get("complete"):
            have = 0 if m is None else len(m["done"])
            total = "?" if m is None else len(m["assigned"])
            raise JobError(f"{out}: shard {i}-of-{num_shards} is not finished ({have} of {total} "
                           "chunks done); run it (with --resume) before merging")
        manifests.append(m)
    if len({m["config_hash"] for m in manifests}) != 1:
        raise JobError(f"{out}: the shards were run with different configurations")
    assigned = sorted(k for m in manifests for k in m["assigned"])
    if assigned != list(range(manifests[0]["num_chunks"])):
        raise JobError(f"{out}: the shards' chunks do not cover the job exactly once")
    return manifests


def _merged_runs(out: Path, num_shards: int, manifests: Sequence[Mapping[str, Any]]
                 ) -> list[Run]:
    """``runs[j]``: plan j's scores from every chunk file, each query from one chunk only."""
    num_plans = len(manifests[0]["plans"])
    runs: list[Run] = [{} for _ in range(num_plans)]
    for i, m in enumerate(manifests):
        folder = shard_dir(out, i, num_shards)
        for k in m["assigned"]:
            info = m["done"][str(k)]
            part = read_chunk(folder / info["file"], num_plans)
            for j, run in enumerate(part):
                if sorted(run) != sorted(info["qids"]):
                    raise JobError(f"{folder / info['file']}: its queries differ from the "
                                   "manifest's")
                for qid, docs in run.items():
                    if qid in runs[j]:
                        raise JobError(f"{out}: query {qid!r} was scored by two chunks")
                    runs[j][qid] = docs
    return runs


def _write_run_atomic(path: Path, run: Run, tag: str) -> None:
    """``trec.write_run`` to a name private to this process, then ``os.replace``: two shards
    merging at the same moment cannot interleave."""
    private = path_private(path)
    trec.write_run(private, run, tag=tag)
    os.replace(private, path)


def _summary(manifests: Sequence[Mapping[str, Any]],
             names: Mapping[str, list[str]]) -> dict[str, Any]:
    chunks = [c for m in manifests for c in m["done"].values()]
    pairs = sum(c["pairs"] for c in chunks)
    seconds = math.fsum(c["seconds"] for c in chunks)
    starts = [s["started_at"] for m in manifests for s in m["sessions"]]
    wall = max(c["finished_at"] for c in chunks) - min(starts)
    first = manifests[0]
    if "cascade" in first["config"]:
        per_stage = [sum(c["stage_pairs"][s] for c in chunks) for s in range(len(first["plans"]))]
        head = {"cascade": first["config"]["cascade"], "files": names["cascade"],
                "stages": [{"plan": p, "pairs": n} for p, n in zip(first["plans"], per_stage)]}
    else:
        head = {
            "plans": [{"plan": p, "plan_arg": a, "files": names[p]}
                      for p, a in zip(first["plans"], first["plan_args"])],
            "passes": [{"plan": str(p.plan), "exits": list(p.exits)} for p in group_plans(
                [Plan.parse(s) for s in first["plans"]])]}
    return {
        **head,
        "queries": sum(m["queries"] for m in manifests),
        "pairs": pairs,
        "truncated": sum(c["truncated"] for c in chunks),
        "skipped_entries": first.get("skipped_entries", 0),
        **({"fuse": first["config"]["fuse"]} if "fuse" in first["config"] else {}),
        **({"windows": _window_summary(first["config"], chunks, first["plans"][0])}
           if "windows" in first["config"] else {}),
        "num_shards": len(manifests),
        "chunks": len(chunks),
        "scoring_seconds": seconds,
        "pairs_per_second": pairs / seconds if seconds else None,
        "wall_seconds": wall,
        "pairs_per_second_wall": pairs / wall if wall > 0 else None,
        "shards": [{"shard": m["shard"], "pairs": m["pairs"], "queries": m["queries"],
                    "scoring_seconds": math.fsum(c["seconds"] for c in m["done"].values()),
                    "sessions": len(m["sessions"])} for m in manifests],
        "config": first["config"],
    }


def _write_summary(out: Path, manifests: Sequence[Mapping[str, Any]],
                   names: Mapping[str, list[str]]) -> None:
    summary = _summary(manifests, names)
    path = out / "summary.json"
    private = path.with_name(f".summary.json.{os.getpid()}")
    with atomic_write(private) as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    os.replace(private, path)
    rate = summary["pairs_per_second"]
    w = summary.get("windows")
    print(f"summary: {summary['queries']} queries, {summary['pairs']} pairs, "
          + (f"{w['windows']} windows ({w['mean_windows']:.2f} a pair, predicted FLOPs "
             f"{w['relative_flops']:.2f}x truncation), " if w else "")
          + f"{summary['truncated']} truncated, {summary['scoring_seconds']:.1f} s scoring "
          f"({rate or 0:.2f} pairs/s per worker), {summary['wall_seconds']:.1f} s wall -> "
          f"{path}", file=sys.stderr)
