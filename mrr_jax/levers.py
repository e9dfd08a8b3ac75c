"""``python -m mrr_jax.levers``: entry point for ``mrr_jax.experiments.levers``."""

from mrr_jax.experiments.levers import main

if __name__ == "__main__":
    raise SystemExit(main())
