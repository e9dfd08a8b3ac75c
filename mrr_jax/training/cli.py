"""The command line of ``python -m mrr_jax.train`` and ``python -m mrr_jax.train_eval``:
``--config configs/NAME.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.training.config import check_config

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
    """(config with the ``--config.KEY=VALUE`` overrides applied and its values checked
    (:func:`~mrr_jax.training.config.check_config`), args) of ``argv``; any other unknown
    argument is a usage error. A bad config, override or ``--workdir`` raises
    :class:`~mrr_jax.runtime.pyconfig.ConfigError` with a one-line message."""
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith(OVERRIDE_PREFIX):
            parser.error(f"unrecognized argument {item}")
        overrides.append(item[len(OVERRIDE_PREFIX):])
    c = load_config(args.config, overrides, flag=OVERRIDE_PREFIX)
    check_config(c)
    check_workdir(args.workdir)
    return c, args


def check_workdir(workdir: Path) -> None:
    """``--workdir`` must be a folder or not exist yet, and no folder above it a file."""
    for p in (workdir, *workdir.absolute().parents):
        if p.exists() and not p.is_dir():
            what = "" if p == workdir else f"{p} "
            raise ConfigError(f"--workdir {workdir}: {what}is a file, not a directory")
