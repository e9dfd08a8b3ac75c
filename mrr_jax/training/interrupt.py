"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption).

While :class:`StopSignals` is active the first signal only raises a flag: the loop finishes the
step it is in, saves a checkpoint of it (unless it just did) and raises :class:`Interrupted`,
whose message is the one line ``interrupted at step N; resume with the same command``; the
command exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), the shells'
convention, so that a scheduler sees an unfinished job. A second signal abandons the step at
once (the run resumes from its last checkpoint), except during a checkpoint save, which always
completes: no signal ever leaves a half-written checkpoint (and orbax's temporary folder of a
save killed by SIGKILL is removed when the next run opens the checkpoints, see
:mod:`mrr_jax.runtime.checkpointing`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import jax
import numpy as np

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by ``signum`` after step ``step`` (its last checkpoint; None: before its
    first step). ``exit_status`` is 128 + ``signum``."""

    def __init__(self, signum: int, step: int | None) -> None:
        super().__init__(signum, step)
        self.signum, self.step = signum, step

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        where = "before the first step" if self.step is None else f"at step {self.step}"
        return f"interrupted {where}; resume with the same command"


class StopSignals:
    """SIGINT / SIGTERM handlers for a training run (a context manager; in the main thread
    only, where Python delivers signals). ``step`` is the step the run would resume from, kept
    up to date by the loop; ``signum`` the first signal received, or None."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.step: int | None = None
        self._saving = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and not self._saving:
            raise Interrupted(self.signum, self.step)
        self.signum = self.signum or signum

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """A checkpoint save: every signal meanwhile only raises the flag."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    def requested(self) -> bool:
        """Whether any process received a signal (every process must call it, in step)."""
        flag = self.signum is not None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            flag = bool(np.max(multihost_utils.process_allgather(np.int32(flag))))
        return flag

    def stop(self, step: int) -> Interrupted:
        """The Interrupted to raise after ``step`` (SIGTERM's status where another process got
        the signal)."""
        return Interrupted(self.signum or signal.SIGTERM, step)
