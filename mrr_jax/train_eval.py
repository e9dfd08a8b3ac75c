"""``python -m mrr_jax.train_eval``: entry point for ``mrr_jax.training.compare``."""

from mrr_jax.training.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
