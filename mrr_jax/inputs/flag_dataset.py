"""Training data files: FlagEmbedding JSONL read and validated into an HF ``datasets.Dataset``
(docs/method.md §1.2, docs/design.md §3); the groups and batches are built from it by
:mod:`mrr_jax.inputs.groups`.

Reading. Files are read through HF ``datasets`` (``Dataset.from_generator``) over our own
validating reader (:func:`mrr_jax.data.flag.iter_flag`), so every bad line raises a
:class:`~mrr_jax.data.errors.DataError` naming the file, the 1-based line and the field
(missing ``neg``, an empty text, scores whose length differs from their texts, a NaN score, an
empty ``prompt``). The generator's arguments hold each file's size, mtime and SHA-256, so the
HF cache key changes whenever a file's content does; by default the cache itself lives in a
temporary folder that is deleted once the rows are in memory, so a stale cache is impossible
either way. With ``cache_dir`` the Arrow files persist there (memory-mapped) and are reused only
for byte-identical inputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike, iter_lines
from mrr_jax.data.flag import iter_flag
from mrr_jax.runtime.digest import file_sha256

__all__ = ["check_negatives", "data_files", "iter_rows", "load_flag_dataset"]

_DATA_SUFFIXES = (".jsonl", ".jsonl.gz")


def data_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Absolute file list: each path as given, a directory as its ``*.jsonl[.gz]`` files
    (recursive, sorted)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("no training data files given")
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser().resolve()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.name.endswith(_DATA_SUFFIXES))
            if not found:
                raise FileNotFoundError(f"{p}: no *.jsonl or *.jsonl.gz files in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _file_key(path: Path) -> dict[str, Any]:
    """What identifies one version of a file in the HF cache key: path, size, mtime, SHA-256."""
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(path)}


def iter_rows(path: PathLike, file_index: int = 0) -> Iterator[dict[str, Any]]:
    """Validated rows of one FlagEmbedding file as plain dicts, with ``file`` (index), ``line``
    (1-based) and ``n_neg``. ``iter_flag`` (strict mode) yields exactly one row per non-blank
    line or raises, so pairing it with the non-blank line numbers locates every row."""
    lines = (n for n, text in iter_lines(path) if text.strip())
    for row, line in zip(iter_flag(path, on_empty="error"), lines):
        if row.prompt is not None and not row.prompt.strip():
            raise DataError("empty prompt (leave the field out to use the default)",
                            path=path, line=line, field="prompt")
        yield {"query": row.query, "pos": row.pos, "neg": row.neg,
               "pos_scores": row.pos_scores, "neg_scores": row.neg_scores,
               "prompt": row.prompt, "file": file_index, "line": line, "n_neg": len(row.neg)}


def _generate(files: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``Dataset.from_generator`` body; ``files`` carries size/mtime/SHA-256 only so that they
    enter the cache key. ``datasets`` shards list arguments (one call per file), so each file
    carries its own ``index``."""
    for f in files:
        yield from iter_rows(f["path"], f["index"])


def _features():
    import datasets

    text, num = datasets.Value("string"), datasets.Value("float64")
    return datasets.Features({
        "query": text, "pos": datasets.List(text), "neg": datasets.List(text),
        "pos_scores": datasets.List(num), "neg_scores": datasets.List(num), "prompt": text,
        "file": datasets.Value("int32"), "line": datasets.Value("int64"),
        "n_neg": datasets.Value("int32")})


def load_flag_dataset(paths: PathLike | Sequence[PathLike], *,
                      cache_dir: PathLike | None = None):
    """Read and validate FlagEmbedding JSONL files into one HF ``datasets.Dataset``.

    Columns: ``query`` str, ``pos``/``neg`` list[str], ``pos_scores``/``neg_scores``
    list[float] or None, ``prompt`` str or None, ``file`` (index into the resolved file list),
    ``line`` (1-based) and ``n_neg``. ``paths``: one
    or more files, or folders (their ``*.jsonl[.gz]`` files, sorted). Returns
    ``(dataset, files)`` with ``files`` the resolved paths ``file`` indexes into.

    ``cache_dir=None`` builds in a temporary folder, loads the rows into memory and deletes
    the folder (nothing is reused, nothing can be stale). With ``cache_dir`` the Arrow files
    stay there, memory-mapped, keyed by every file's path, size, mtime and SHA-256.
    """
    import datasets

    files = data_files(paths)
    kwargs = {"files": [{"index": i, **_file_key(f)} for i, f in enumerate(files)]}
    try:
        if cache_dir is not None:
            ds = datasets.Dataset.from_generator(_generate, features=_features(),
                                                 cache_dir=str(cache_dir), gen_kwargs=kwargs)
            return ds, files
        with tempfile.TemporaryDirectory(prefix="mrr_jax_flag_") as tmp:
            ds = datasets.Dataset.from_generator(_generate, features=_features(),
                                                 cache_dir=tmp, keep_in_memory=True,
                                                 gen_kwargs=kwargs)
        return ds, files
    except datasets.exceptions.DatasetGenerationError as e:
        cause = _data_error(e)
        if cause is None:
            raise
        raise cause from None  # our located error, not HF's generic wrapper


def _data_error(e: BaseException) -> DataError | None:
    """The DataError that a ``datasets`` wrapper exception was raised from, if any."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, DataError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def check_negatives(n_neg: np.ndarray, files: Sequence[PathLike], file_idx: np.ndarray,
                     lines: np.ndarray, group_size: int) -> None:
    """A query without negatives cannot fill a group of ``group_size > 1``."""
    if group_size <= 1:
        return
    bad = np.flatnonzero(n_neg == 0)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size} such queries in all)" if bad.size > 1 else ""
        raise DataError(f"no negatives, but group_size={group_size} needs {group_size - 1} per "
                        f"query{more}; add negatives or train with group_size=1",
                        path=files[int(file_idx[i])], line=int(lines[i]), field="neg")
