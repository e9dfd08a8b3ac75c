"""``python -m mrr_jax.train``: entry point for ``mrr_jax.training.loop``."""

from mrr_jax.training.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
