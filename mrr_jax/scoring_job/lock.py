"""One process per shard folder: a lock on ``OUT/shards/<i>-of-<n>/.lock``.

Shards of one job legitimately run at the same time on one ``--out`` (each writes only its own
folder; the merge writes under names private to its process), so the lock is per shard: it
keeps a second process -- say one started with ``--resume`` while the first still runs -- from
scoring the same shard and rewriting its manifest. It is an ``fcntl.flock`` on the lock file,
held for the whole run of the shard (scoring and merge). The kernel releases it when its
process ends, however it ends, so a lock left by a dead process is stale and simply taken over.
The holder writes its pid into the file, for the message the next process gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mrr_jax.scoring_job.config import JobError

LOCK = ".lock"


@contextlib.contextmanager
def shard_lock(folder: Path) -> Iterator[Path]:
    """Holds the lock of the shard folder ``folder`` (which must exist) for the ``with`` block;
    :class:`JobError` naming the folder and the holder's pid if another process holds it."""
    path = Path(folder) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(f"{folder} is in use by {_holder(fd)} (another python -m "
                           "mrr_jax.score on the same --out and shard); wait for it to end or "
                           "stop it, then pass --resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """``process <pid>`` as the holder wrote it (unknown in the instant before it writes)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"process {text}" if text.isdigit() else "another process (pid not written yet)"
