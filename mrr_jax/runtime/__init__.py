"""Process plumbing: mesh and shardings, compile cache, config loading, checkpoints."""
