"""The one error type of the data layer, and the tally of what lenient readers skipped.

Every reader raises :class:`DataError` for bad input; its message names the file, the 1-based
line number and the field, e.g. ``corpus.jsonl, line 7, field 'text': empty document``. Readers
that can skip instead of raising (``on_empty="skip"``) record what they skipped in a
:class:`Skipped` tally and log one warning when they finish.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("mrr_jax.data")

OnEmpty = Literal["error", "skip"]


class DataError(ValueError):
    """Bad input data, located: ``path`` (file), ``line`` (1-based) and ``field`` (column/key).

    Any of the three may be ``None`` when it does not apply (e.g. a check over an in-memory run).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.reason = message
        super().__init__(_locate(message, self.path, line, field))


def _locate(message: str, path: str | None, line: int | None, field: str | None) -> str:
    where = [part for part in (
        path,
        None if line is None else f"line {line}",
        None if field is None else f"field '{field}'",
    ) if part is not None]
    return f"{', '.join(where)}: {message}" if where else message


@dataclass
class Skipped:
    """What a lenient reader skipped instead of raising.

    ``counts`` maps a reason (e.g. ``"empty document"``) to how many records it skipped;
    ``examples`` keeps the first few locations (``"path, line N"``) for the log message.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, reason: str, path: str | os.PathLike[str] | None, line: int | None) -> None:
        """Count one skipped record."""
        self.counts[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(_locate(reason, None if path is None else str(path), line, None))

    @property
    def total(self) -> int:
        """Records skipped, all reasons together."""
        return sum(self.counts.values())


def report_skipped(skipped: Skipped, before: int, what: str) -> None:
    """Log one warning if ``skipped`` grew past ``before`` while reading ``what``."""
    n = skipped.total - before
    if n:
        log.warning("%s: skipped %d record(s) (%s); first: %s", what, n,
                    ", ".join(f"{k}: {v}" for k, v in sorted(skipped.counts.items())),
                    "; ".join(skipped.examples))


def skip_or_raise(on_empty: OnEmpty, skipped: Skipped, message: str,
                  path: str | os.PathLike[str] | None, line: int | None, field: str,
                  reason: str | None = None) -> None:
    """An empty record: raise ``DataError(message)`` (``on_empty="error"``) or count it in
    ``skipped`` under ``reason`` (default: ``message``)."""
    if on_empty == "error":
        raise DataError(message, path=path, line=line, field=field)
    skipped.add(reason or message, path, line)


def check_on_empty(on_empty: str) -> None:
    """Reject an ``on_empty`` value other than ``"error"`` or ``"skip"``."""
    if on_empty not in ("error", "skip"):
        raise ValueError(f"on_empty must be 'error' or 'skip', got {on_empty!r}")
