"""``python -m mrr_jax.convert``: entry point for ``mrr_jax.weights.convert``."""

from mrr_jax.weights.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
