"""``python -m mrr_jax.bench``: entry point for ``mrr_jax.experiments.bench``."""

from mrr_jax.experiments.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
