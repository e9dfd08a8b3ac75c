"""The one file hasher and the one JSON digest (cache keys, config fingerprints, manifests)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_digest(obj: Any, length: int | None = None) -> str:
    """Hex SHA-256 of ``obj`` as canonical JSON (keys sorted, default separators; values JSON
    cannot hold are written as ``str(value)``), cut to its first ``length`` characters (all 64
    by default)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
