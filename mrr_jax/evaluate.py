"""``python -m mrr_jax.evaluate``: entry point for ``mrr_jax.evaluation.cli``."""

from mrr_jax.evaluation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
