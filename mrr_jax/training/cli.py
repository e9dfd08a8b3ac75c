"""The command line of ``python -m mrr_jax.train`` and ``python -m mrr_jax.train_eval``:
``--config configs/NAME.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.runtime.pyconfig import load_config

OVERRIDE_PREFIX = "--config."


def config_parser(prog: str, description: str | None, workdir_help: str
                  ) -> argparse.ArgumentParser:
    """``--config configs/NAME.py[:ARG] --workdir DIR``; :func:`parse` adds the overrides."""
    p = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any setting of mrr_jax/training/config.py can be changed with "
               "--config.KEY=VALUE (e.g. --config.train.steps=20 --config.mesh.fsdp=4).")
    p.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
    p.add_argument("--workdir", required=True, type=Path, help=workdir_help)
    return p


def train_parser(description: str | None) -> argparse.ArgumentParser:
    """The trainer's parser: :func:`config_parser` plus ``--distributed``."""
    p = config_parser("python -m mrr_jax.train", description,
                      "checkpoints, metrics.jsonl, adapters/")
    p.add_argument("--distributed", action="store_true", help="jax.distributed.initialize() "
                   "(also MRR_JAX_DISTRIBUTED=1)")
    return p


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    """(config with the ``--config.KEY=VALUE`` overrides applied, args) of ``argv``; any other
    unknown argument is a usage error. Config errors raise
    :class:`~mrr_jax.runtime.pyconfig.ConfigError`."""
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith(OVERRIDE_PREFIX):
            parser.error(f"unrecognized argument {item!r}")
        overrides.append(item[len(OVERRIDE_PREFIX):])
    return load_config(args.config, overrides), args
