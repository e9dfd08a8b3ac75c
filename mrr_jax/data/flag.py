"""FlagEmbedding training JSONL: one query per line with its positives and negatives.

``{"query": str, "pos": [str, ...], "neg": [str, ...], "pos_scores"?: [float],
"neg_scores"?: [float], "prompt"?: str}``

``pos`` must hold at least one text; ``neg`` may be empty. Teacher scores, when present, must be
as long as their texts and finite (a NaN teacher score is an error, never silently used).
Errors raise :class:`DataError` naming the file, 1-based line and field (``neg[4]``). Empty
texts (query, a positive or a negative) are an error by default; with ``on_empty="skip"`` the
whole line is skipped, counted in ``skipped`` and logged once. The trainer itself reads these
files with HF ``datasets``; this module validates and writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mrr_jax.data.errors import (
    DataError,
    OnEmpty,
    Skipped,
    check_on_empty,
    report_skipped,
    skip_or_raise,
)
from mrr_jax.data.fileio import PathLike, atomic_write, dumps, get_str, iter_json_objects, to_float


@dataclass(frozen=True, slots=True)
class FlagRow:
    """One training query: texts of its positives and negatives, optional teacher scores."""

    query: str
    pos: list[str]
    neg: list[str]
    pos_scores: list[float] | None = None
    neg_scores: list[float] | None = None
    prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSONL object (optional keys left out when ``None``)."""
        obj: dict[str, Any] = {"query": self.query, "pos": self.pos, "neg": self.neg}
        for key in ("pos_scores", "neg_scores", "prompt"):
            if getattr(self, key) is not None:
                obj[key] = getattr(self, key)
        return obj


class _Empty(Exception):
    def __init__(self, field: str) -> None:
        self.field = field


def _texts(obj: dict[str, Any], key: str, path: PathLike, line: int) -> list[str]:
    if key not in obj:
        raise DataError("missing field", path=path, line=line, field=key)
    value = obj[key]
    if not isinstance(value, list):
        raise DataError(f"expected a list of strings, got {type(value).__name__}",
                        path=path, line=line, field=key)
    for i, t in enumerate(value):
        if not isinstance(t, str):
            raise DataError(f"expected a string, got {type(t).__name__}",
                            path=path, line=line, field=f"{key}[{i}]")
    return value


def _scores(obj: dict[str, Any], key: str, n: int, path: PathLike, line: int) -> list[float] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        raise DataError(f"expected a list of {n} numbers (one per text)",
                        path=path, line=line, field=key)
    return [to_float(v, path=path, line=line, field=f"{key}[{i}]") for i, v in enumerate(value)]


def _parse(obj: dict[str, Any], path: PathLike, line: int) -> FlagRow:
    query = get_str(obj, "query", path, line)
    pos = _texts(obj, "pos", path, line)
    neg = _texts(obj, "neg", path, line)
    if not pos:
        raise DataError("needs at least one positive", path=path, line=line, field="pos")
    prompt = get_str(obj, "prompt", path, line, required=False)
    row = FlagRow(query=query, pos=pos, neg=neg,
                  pos_scores=_scores(obj, "pos_scores", len(pos), path, line),
                  neg_scores=_scores(obj, "neg_scores", len(neg), path, line), prompt=prompt)
    if not query.strip():
        raise _Empty("query")
    for key, texts in (("pos", pos), ("neg", neg)):
        for i, t in enumerate(texts):
            if not t.strip():
                raise _Empty(f"{key}[{i}]")
    return row


def iter_flag(path: PathLike, *, on_empty: OnEmpty = "error",
              skipped: Skipped | None = None) -> Iterator[FlagRow]:
    """Stream and validate the rows of a FlagEmbedding JSONL file."""
    check_on_empty(on_empty)
    skipped = Skipped() if skipped is None else skipped
    before = skipped.total
    for line, obj in iter_json_objects(path):
        try:
            yield _parse(obj, path, line)
        except _Empty as e:
            skip_or_raise(on_empty, skipped, "empty text", path, line, e.field)
    report_skipped(skipped, before, str(path))


def load_flag(path: PathLike, *, on_empty: OnEmpty = "error",
              skipped: Skipped | None = None) -> list[FlagRow]:
    """Read a whole FlagEmbedding JSONL file."""
    return list(iter_flag(path, on_empty=on_empty, skipped=skipped))


def write_flag(path: PathLike, rows: Iterable[FlagRow]) -> int:
    """Write FlagEmbedding JSONL (validated as the reader does); return the row count."""
    n = 0
    with atomic_write(path) as f:
        for n, row in enumerate(rows, start=1):
            obj = row.to_json()
            try:
                _parse(obj, path, n)
            except _Empty as e:
                raise DataError("empty text", path=path, line=n, field=e.field) from None
            f.write(dumps(obj) + "\n")
    return n
