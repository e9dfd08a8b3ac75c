"""Multi-process JAX: ``jax.distributed.initialize`` when asked for.

Asked for by a ``--distributed`` flag or ``MRR_JAX_DISTRIBUTED=1``. The coordinator address,
process count and process id come from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` when set (otherwise JAX detects them: TPU pods, SLURM, ...).
"""

from __future__ import annotations

import os
from typing import Any


def distributed_requested(flag: bool) -> bool:
    """True under ``flag`` or ``MRR_JAX_DISTRIBUTED=1``."""
    return flag or os.environ.get("MRR_JAX_DISTRIBUTED") == "1"


def initialize_kwargs() -> dict[str, Any]:
    """``jax.distributed.initialize`` arguments from the ``JAX_*`` environment variables set."""
    kwargs: dict[str, Any] = {}
    if addr := os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = addr
    if n := os.environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(n)
    if i := os.environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(i)
    return kwargs


def maybe_init_distributed(flag: bool) -> None:
    """``jax.distributed.initialize`` under ``flag`` or ``MRR_JAX_DISTRIBUTED=1``, once per
    process (a second job in the same process finds it initialized and goes on)."""
    if not distributed_requested(flag):
        return
    import jax

    if not jax.distributed.is_initialized():
        jax.distributed.initialize(**initialize_kwargs())
