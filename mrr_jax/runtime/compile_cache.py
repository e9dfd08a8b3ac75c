"""JAX's persistent compilation cache, on by default for mrr_jax programs.

A plan's program is compiled once per (plan, batch bucket, length bucket) and kept in memory by
``jax.jit``; this module adds the on-disk cache so that a new process reuses earlier
compilations. Location: ``$MRR_JAX_COMPILE_CACHE`` if set (``off`` disables it), else
``$MRR_JAX_CACHE/xla`` (default ``~/.cache/mrr_jax/xla``). A cache directory the user already
configured through ``jax.config`` is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def default_dir() -> Path | None:
    env = os.environ.get("MRR_JAX_COMPILE_CACHE")
    if env is not None:
        return None if env.lower() in ("", "0", "off", "none") else Path(env)
    root = os.environ.get("MRR_JAX_CACHE") or Path.home() / ".cache" / "mrr_jax"
    return Path(root) / "xla"


def enable(path: str | Path | None = None) -> Path | None:
    """Turns the persistent cache on (idempotent); returns its directory, or None if off."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    target = Path(path) if path is not None else default_dir()
    if target is None:
        return None
    target.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(target))
    # Cache every program: the small ones are exactly what a plan grid compiles many of.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return target
