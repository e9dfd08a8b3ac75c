"""``python -m mrr_jax.convert``: entry point for ``mrr_jax.weights.convert_cli``."""

from mrr_jax.weights.convert_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
