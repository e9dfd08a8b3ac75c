"""``python -m mrr_jax.fusion``: entry point for ``mrr_jax.evaluation.fusion`` (choosing the
first-stage fusion weight of ``python -m mrr_jax.score --fuse`` on DEV qrels, never test)."""

from mrr_jax.evaluation.fusion import main

if __name__ == "__main__":
    raise SystemExit(main())
