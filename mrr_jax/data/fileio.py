"""Line-level file access for every format: numbered line reading, JSON fields, atomic writes.

Files ending in ``.gz`` are read and written through gzip (written with ``mtime=0`` so that the
bytes are reproducible). Writers go to ``<path>.tmp`` and ``os.replace`` it over ``path`` only
once everything was written, so a failed write never destroys an existing file.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mrr_jax.data.errors import DataError

PathLike = str | os.PathLike[str]


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for each line of ``path`` (1-based, newline stripped).

    Blank lines are yielded too; callers decide whether they matter. Bytes that are not UTF-8
    raise :class:`DataError` naming the line.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"not valid UTF-8 ({e.reason})", path=path, line=lineno) from None
            yield lineno, line.rstrip("\r\n")


def iter_json_objects(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg} at column {e.colno})",
                            path=path, line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}",
                            path=path, line=lineno)
        yield lineno, obj


def get_id(obj: dict[str, Any], key: str, path: PathLike, line: int, where: str = "") -> str:
    """``obj[key]`` as an id: a non-empty string (an integer is accepted and converted).

    ``where`` prefixes the field name in errors (e.g. ``"candidates[2]."``).
    """
    name = where + key
    if key not in obj:
        raise DataError("missing field", path=path, line=line, field=name)
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"expected a string id, got {type(value).__name__}",
                        path=path, line=line, field=name)
    check_id(value, path=path, line=line, field=name)
    return value


def check_id(value: str, *, path: PathLike | None, line: int | None, field: str) -> None:
    """Reject an empty id or one holding whitespace (which TSV/TREC files cannot carry)."""
    if not value:
        raise DataError("empty id", path=path, line=line, field=field)
    if any(c.isspace() for c in value):
        raise DataError(f"id {value!r} contains whitespace", path=path, line=line, field=field)


def check_unique(seen: dict[str, int], key: str, path: PathLike, line: int, field: str,
                 what: str = "id") -> None:
    """Record ``key`` as first seen at ``line``; a second sighting is a ``DataError`` naming
    both lines."""
    first = seen.setdefault(key, line)
    if first != line:
        raise DataError(f"duplicate {what} {key!r} (first at line {first})",
                        path=path, line=line, field=field)


def get_str(obj: dict[str, Any], key: str, path: PathLike, line: int, *, required: bool = True,
            where: str = "") -> str | None:
    """``obj[key]`` as a string; ``None`` if absent and not ``required``."""
    name = where + key
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise DataError("missing field", path=path, line=line, field=name)
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}",
                        path=path, line=line, field=name)
    return value


def to_float(text: Any, *, path: PathLike | None, line: int | None, field: str) -> float:
    """Parse a finite float (from a string or a JSON number), or raise naming the field."""
    if isinstance(text, bool):
        raise DataError("expected a number, got a boolean", path=path, line=line, field=field)
    if not isinstance(text, str | int | float):  # a JSON null, list or object
        raise DataError(f"not a number: {text!r}", path=path, line=line, field=field)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"not a number: {text!r}", path=path, line=line, field=field) from None
    if not math.isfinite(value):
        raise DataError(f"not a finite number: {text!r}", path=path, line=line, field=field)
    return value


def to_int(text: str, *, path: PathLike | None, line: int | None, field: str) -> int:
    """Parse an integer column, or raise naming the field."""
    try:
        return int(text)
    except ValueError:
        raise DataError(f"not an integer: {text!r}", path=path, line=line, field=field) from None


def one_line(text: str) -> str:
    """``text`` with tabs, CRs and LFs turned into spaces (for one-line TSV fields)."""
    return text.translate(_ONE_LINE)


_ONE_LINE = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


@contextmanager
def atomic_write(path: PathLike) -> Iterator[IO[str]]:
    """Open ``<path>.tmp`` for UTF-8 text writing; on success replace ``path`` with it.

    Parent folders are created. On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
                        io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
                    yield f
            else:
                with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:
                    yield f
                    f.flush()
                    os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (via ``<path>.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dumps(obj: Any) -> str:
    """One JSONL line for ``obj`` (UTF-8 kept as is, no trailing newline)."""
    return json.dumps(obj, ensure_ascii=False)


def check_output_folder(out: PathLike, marker: str, *, force: bool) -> None:
    """Refuse (``ValueError``) to write a build into ``out`` when it is a non-empty folder
    without the ``marker`` file of an earlier build, unless ``force``."""
    out = Path(out)
    if not force and out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise ValueError(f"{out} is not empty and holds no earlier build ({marker}); "
                         "use --force to write into it")
