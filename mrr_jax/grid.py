"""``python -m mrr_jax.grid``: entry point for ``mrr_jax.evaluation.grid``."""

from mrr_jax.evaluation.grid import main

if __name__ == "__main__":
    raise SystemExit(main())
