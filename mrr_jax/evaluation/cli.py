"""``python -m mrr_jax.evaluate``: the metrics command, and its ``grid`` sub-command.

``python -m mrr_jax.evaluate grid ...`` is the plan grid (:func:`mrr_jax.evaluation.grid.main`,
the same as ``python -m mrr_jax.grid``); anything else is the metrics command
(:func:`mrr_jax.evaluation.evaluate.main`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mrr_jax.evaluation import evaluate, grid


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grid"]:
        return grid.main(argv[1:])
    return evaluate.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
