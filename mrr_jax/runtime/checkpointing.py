"""The one place that talks to orbax: training checkpoints under ``<workdir>/checkpoints``.

A checkpoint holds the trainable adapters and the optimizer state (``state``, sharded arrays)
and a JSON ``meta`` (step, data position, resolved config and its hash). Orbax writes each step
into a temporary folder (``<step>.orbax-checkpoint-tmp-*``) and renames it when complete, so a
process killed mid-save leaves no half-written checkpoint that could be resumed from
(``latest()`` sees only finished steps), and opening the checkpoints removes such leftover
temporary folders. Saving is synchronous (``save`` returns once the step is complete on disk),
which keeps resume exactly reproducible and lets the trainer hold signals off for the length
of a save (``mrr_jax.training.interrupt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Save / restore (state pytree, meta dict) by step, keeping the last ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        self.directory = Path(directory).absolute()
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                            create=True, cleanup_tmp_directories=True)
        self._mgr = ocp.CheckpointManager(self.directory, options=opts)

    def latest(self) -> int | None:
        """The last completely written step, or None."""
        return self._mgr.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self._mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
        self._mgr.wait_until_finished()

    def meta(self, step: int) -> dict[str, Any]:
        """The meta dict of ``step`` alone (no arrays are read)."""
        return self._mgr.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """(state, meta) of ``step``; ``like`` is a pytree of arrays (or shape/dtype/sharding
        structs) giving the structure and the target shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._mgr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def close(self) -> None:
        self._mgr.close()
