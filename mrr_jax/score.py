"""``python -m mrr_jax.score``: entry point for ``mrr_jax.scoring_job.cli`` (the scoring job,
described in ``mrr_jax.scoring_job.job``)."""

from mrr_jax.scoring_job.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
