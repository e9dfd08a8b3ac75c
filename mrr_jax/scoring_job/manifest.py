"""Shard state on disk: ``OUT/shards/<i>-of-<n>/manifest.json``, and the checks that let a job
start in, or resume from, an output folder.

The manifest is the commit point of each chunk: it is replaced whole (temporary file, fsync,
``os.replace``) after the chunk's file is written, listing the finished chunks, their qids and
the job's fingerprint (key ``config_hash``; see
:func:`~mrr_jax.scoring_job.config.job_fingerprint`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.data.fileio import atomic_write
from mrr_jax.data.units import Unit
from mrr_jax.scoring_job.config import JobError
from mrr_jax.scoring_job.lock import LOCK

MANIFEST = "manifest.json"


def shard_dir(out: Path, shard: int, num_shards: int) -> Path:
    """``OUT/shards/<i>-of-<n>``."""
    return out / "shards" / f"{shard}-of-{num_shards}"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A shard's manifest, or None if it has none yet."""
    f = folder / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise JobError(f"{f}: corrupt manifest ({e.msg}); it is only ever replaced whole, so "
                       "something else wrote it") from None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Replace a shard's manifest atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_write(folder / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def shard_dirs(out: Path) -> dict[tuple[int, int], Path]:
    """``{(i, n): folder}`` of every shard folder under ``OUT/shards``."""
    found = {}
    root = out / "shards"
    if root.is_dir():
        for d in root.iterdir():
            m = re.fullmatch(r"(\d+)-of-(\d+)", d.name)
            if m and d.is_dir():
                found[int(m.group(1)), int(m.group(2))] = d
    return found


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_out_dir(out: Path, shard: int, num_shards: int, fingerprint: str,
                  hashed: Mapping[str, Any], resume: bool) -> dict[str, Any] | None:
    """Check that ``out`` may take this shard; return the shard's manifest when resuming.

    Without ``resume`` the folder must be empty or hold only sibling shards of this very job
    (same ``n``, same fingerprint). With it, the shard's manifest, if any, must carry the
    same fingerprint."""
    mine = shard_dir(out, shard, num_shards)
    for (i, n), d in sorted(shard_dirs(out).items()):
        if n != num_shards:
            raise JobError(f"{out} holds shard {i}-of-{n} of a job cut into {n} shards, not "
                           f"{num_shards}; use another --out or the same shard count")
        m = read_manifest(d)
        if d != mine and m is not None and m["config_hash"] != fingerprint:
            raise JobError(f"{out}: shard {i}-of-{n} belongs to another job (its configuration "
                           f"differs in: {', '.join(_diff(m['config'], hashed))}); "
                           "use another --out")
    manifest = read_manifest(mine)
    if resume:
        if manifest is not None and manifest["config_hash"] != fingerprint:
            raise JobError(f"refusing to resume {mine}: the job's configuration changed since it "
                           f"started (differs in: {', '.join(_diff(manifest['config'], hashed))})."
                           " Rerun with the original settings, or use another --out")
        return manifest
    others = [p.name for p in out.iterdir()] if out.is_dir() else []
    foreign = [name for name in others if name != "shards"]
    if foreign or (mine.is_dir() and any(p.name != LOCK for p in mine.iterdir())):
        what = ", ".join(sorted(foreign)) or str(mine.relative_to(out))
        raise JobError(f"{out} already exists and is not empty ({what}); pass --resume to "
                       "continue the job it holds, or choose another --out")
    return None


def check_cut(out: Path, num_shards: int, num_chunks: int,
              ranges: Sequence[range]) -> None:
    """Every shard manifest under ``out`` holds the chunks this job's cut gives its shard
    (:func:`~mrr_jax.scoring_job.chunks.cut_job`): a folder whose shards were cut by another
    rule (an older version) is refused rather than mixed."""
    for i in range(num_shards):
        m = read_manifest(shard_dir(out, i, num_shards))
        if m is None:
            continue
        if m["num_chunks"] != num_chunks or m["assigned"] != list(ranges[i]):
            raise JobError(
                f"{out}: shard {i}-of-{num_shards} was cut into chunks differently (it holds "
                f"{_span(m['assigned'])} of {m['num_chunks']} chunks, where this version cuts "
                f"{_span(ranges[i])} of {num_chunks}): an older version of mrr_jax started "
                "the job. Finish it with that version, or start again in another --out (a "
                "finished job still merges with --merge-only)")


def _span(chunks: Sequence[int]) -> str:
    return f"chunks {chunks[0]}..{chunks[-1]}" if len(chunks) else "no chunk"


def check_done(manifest: Mapping[str, Any], chunks: Sequence[Sequence[Unit]],
               folder: Path) -> None:
    """Every chunk the manifest lists as finished has the job's queries and its files."""
    for k, info in manifest["done"].items():
        expect = [u.qid for u in chunks[int(k)]] if int(k) < len(chunks) else None
        files = [info["file"], *([info["windows_file"]] if "windows_file" in info else [])]
        if expect != info["qids"] or not all((folder / f).is_file() for f in files):
            raise JobError(f"{folder / MANIFEST}: finished chunk {k} does not match the job "
                           "(its queries or its file); the folder was altered, use another --out")


def all_complete(out: Path, num_shards: int) -> bool:
    """True when every shard of ``num_shards`` has a complete manifest."""
    ms = [read_manifest(shard_dir(out, i, num_shards)) for i in range(num_shards)]
    return all(m is not None and m.get("complete") for m in ms)
