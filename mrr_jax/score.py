"""``python -m mrr_jax.score``: entry point for ``mrr_jax.scoring_job.job``."""

from mrr_jax.scoring_job.job import main

if __name__ == "__main__":
    raise SystemExit(main())
