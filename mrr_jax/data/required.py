"""Input files a command line names: a missing one is a ``FileNotFoundError`` whose message
names the flag (or config key) that gave it and, where there is one, the command that makes
the file -- rather than bare errno text.

The files of the example dataset (``python -m mrr_jax.data.example OUT``, see
:mod:`mrr_jax.data.example`) are recognised by their place in ``OUT``: ``corpus.jsonl``,
``queries.jsonl``, ``train.jsonl``, ``dev.jsonl``, ``train_bm25.jsonl``, ``stats.json``,
``qrels/<split>.tsv`` and ``bm25/<split>.trec``.
"""

from __future__ import annotations

from pathlib import Path

from mrr_jax.data.fileio import PathLike

EXAMPLE_COMMAND = "python -m mrr_jax.data.example"
EXAMPLE_FILES = ("corpus.jsonl", "queries.jsonl", "train.jsonl", "dev.jsonl",
                 "train_bm25.jsonl", "stats.json")
EXAMPLE_SUBFOLDERS = {"qrels": ".tsv", "bm25": ".trec"}


def example_folder(path: PathLike) -> Path | None:
    """The folder ``OUT`` when ``path`` is where ``python -m mrr_jax.data.example OUT`` writes
    one of its files, else None."""
    p = Path(path)
    if p.name in EXAMPLE_FILES:
        return p.parent
    if EXAMPLE_SUBFOLDERS.get(p.parent.name) == p.suffix:
        return p.parent.parent
    return None


def example_hint(folder: PathLike) -> str:
    """How the example dataset is built into ``folder``."""
    return f"the example dataset is built there by: {EXAMPLE_COMMAND} {folder}"


def require_file(path: PathLike, flag: str) -> Path:
    """``path`` as a ``Path`` if it is a file; else ``FileNotFoundError`` naming ``flag`` (the
    command-line flag or config key that gave it) and, for a file of the example dataset, the
    command that builds it."""
    p = Path(path)
    if p.is_file():
        return p
    what = "is a folder, not a file" if p.is_dir() else "no such file"
    msg = f"{flag}: {path}: {what}"
    folder = example_folder(p)
    if folder is not None and not p.is_dir():
        msg += f" ({example_hint(folder)})"
    raise FileNotFoundError(msg)


def require_folder(path: PathLike, flag: str, *, example: bool = False) -> Path:
    """``path`` as a ``Path`` if it is a folder; else ``FileNotFoundError`` naming ``flag``
    (with ``example``: and how the example dataset is built there)."""
    p = Path(path)
    if p.is_dir():
        return p
    msg = f"{flag}: {path}: {'not a folder' if p.exists() else 'no such folder'}"
    if example and not p.exists():
        msg += f" ({example_hint(path)})"
    raise FileNotFoundError(msg)
