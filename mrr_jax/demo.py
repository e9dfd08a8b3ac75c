"""``python -m mrr_jax.demo``: entry point for ``mrr_jax.experiments.demo``."""

from mrr_jax.experiments.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
