"""``python -m mrr_jax.transfer``: entry point for ``mrr_jax.experiments.transfer``."""

from mrr_jax.experiments.transfer import main

if __name__ == "__main__":
    raise SystemExit(main())
