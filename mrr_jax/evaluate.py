"""``python -m mrr_jax.evaluate``: entry point for ``mrr_jax.evaluation.evaluate``."""

from mrr_jax.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
