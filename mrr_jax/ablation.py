"""``python -m mrr_jax.ablation``: entry point for ``mrr_jax.experiments.ablation``."""

from mrr_jax.experiments.ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
