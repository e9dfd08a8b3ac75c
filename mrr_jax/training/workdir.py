"""A training run's workdir as the trainer reads it before it trains: which run it holds,
whether that run has finished, and which records of its ``metrics.jsonl`` a resumed run keeps.

- ``config.json``: the resolved config and its ``config_hash``, written when a run starts (after
  the checks below). A workdir holds one run: another config is refused, naming the keys that
  differ, before anything reads a checkpoint; only ``eval.*``, the bookkeeping settings
  (``RESUMABLE_TRAIN_KEYS``) and the run's length (``EXTENDABLE_TRAIN_KEYS``) may change.
- ``summary.json``: written last, when the run has finished (with its ``config_hash``). A rerun
  of the finished run changes nothing; a run extended to more steps removes it when it starts
  and writes it again when it finishes.
- ``metrics.jsonl``: a run that starts from scratch starts it afresh; a resumed run keeps the
  records up to and including its checkpoint's step (the step-0 evaluation among them) and drops
  the later ones, which it runs and logs again: every step and every evaluation is logged once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrr_jax.data.fileio import atomic_write_bytes
from mrr_jax.runtime.pyconfig import ConfigError
from mrr_jax.training.config import EXTENDABLE_TRAIN_KEYS, config_diff, roles_of
from mrr_jax.training.state import adapter_folder

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
EXTENDABLE = tuple(f"train.{k}" for k in EXTENDABLE_TRAIN_KEYS)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not the JSON the trainer wrote ({e}); was it edited?"
                          ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: not the JSON object the trainer wrote; was it edited?")
    return obj


def write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def finished_summary(workdir: Path, digest: str) -> dict[str, Any] | None:
    """The ``summary.json`` of the run of config ``digest`` if it has finished in ``workdir``,
    else None. (Summaries written before they carried their ``config_hash``: that of
    ``config.json``.)"""
    summary = read_json(workdir / SUMMARY)
    if summary is None:
        return None
    made_by = summary.get("config_hash") or (read_json(workdir / CONFIG) or {}).get(
        "config_hash")
    return summary if made_by == digest else None


def check_same_run(workdir: Path, saved: dict[str, Any] | None, resolved: dict[str, Any],
                   digest: str) -> list[str]:
    """Whether config ``resolved`` (fingerprint ``digest``) continues the run whose config is
    ``saved`` (``config.json``, or a checkpoint's; None: none yet): returns the keys of
    :data:`EXTENDABLE` that changed (the run is extended or shortened), or raises a ConfigError
    that names every key that differs."""
    if saved is None or saved.get("config_hash") == digest:
        return []
    diff = config_diff(saved, resolved)
    if any(k not in EXTENDABLE for k in diff):
        raise ConfigError(f"{workdir} holds a training run of another config (differs in: "
                          f"{', '.join(diff)}); use another --workdir, or the run's own config "
                          "to resume or extend it")
    return diff


def kept_records(workdir: Path, start: int) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` a run that starts at step ``start`` keeps (see the
    module docstring); a line torn by a killed write is dropped."""
    path = workdir / METRICS
    if start == 0 or not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= start:
            out.append(rec)
    return out


def write_records(workdir: Path, records: list[dict[str, Any]]) -> None:
    """Replaces ``metrics.jsonl`` with ``records`` (atomically)."""
    atomic_write_bytes(workdir / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())


def logged_eval(records: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    """The dev evaluation logged at ``step``, or None."""
    found = [r["eval"] for r in records if r["step"] == step and "eval" in r]
    return found[-1] if found else None


def finished_line(c, workdir: Path, summary: dict[str, Any]) -> str:
    """What a rerun of a finished run (config ``c``) prints."""
    steps = summary["steps"]
    folders = ", ".join(str(adapter_folder(workdir, role)) for role in roles_of(c))
    return (f"{workdir}: this run has finished ({steps} steps); adapters in {folders}; to "
            f"train longer, run the same command with --config.train.steps=N (N > {steps})")


def result_line(c, summary: dict[str, Any]) -> str:
    """What a run prints when it ends: its final dev evaluation (JSON), or why there is
    none and where the adapters are."""
    if summary["final_eval"] is not None:
        return json.dumps(summary["final_eval"])
    why = "no dev set (data.dev is empty)" if not c.data.dev else "eval.plans is empty"
    return f"{why}: no evaluation; adapters in {', '.join(summary['adapters'])}"
