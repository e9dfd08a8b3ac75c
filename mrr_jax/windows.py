"""``python -m mrr_jax.windows``: entry point for ``mrr_jax.experiments.windows`` (truncation
against MaxP, FirstP and mean windows on a split, with paired-bootstrap intervals)."""

from mrr_jax.experiments.windows import main

if __name__ == "__main__":
    raise SystemExit(main())
