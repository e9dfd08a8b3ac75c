"""Convert a llama GGUF file into a float32 Hugging Face checkpoint directory
(:func:`convert_gguf`; the command line, ``python -m mrr_jax.convert``, is
:mod:`mrr_jax.weights.convert_cli`).

The directory holds ``config.json``, ``model.safetensors`` (float32, no ``lm_head`` when the
embedding is tied), ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``
and ``generation_config.json``; PyTorch transformers and ``mrr_jax.weights.hf`` both read it.
It also holds ``mrr_jax_convert.json`` (the converter and the GGUF file's name and size), which
marks it as a conversion: ``force`` replaces such a folder and never any other. It is written
into a temporary sibling directory and renamed into place at the end, so a half-written DIR
never exists.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.weights.gguf import GGUFCheckpoint, read_gguf

PROVENANCE = "mrr_jax_convert.json"  # written by every conversion: marks a folder as ours


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


def is_conversion(path: Path) -> bool:
    """Whether ``path`` holds a conversion this module wrote: ``config.json``,
    ``model.safetensors`` and the provenance file ``mrr_jax_convert.json``."""
    return all((path / name).is_file() for name in ("config.json", "model.safetensors",
                                                    PROVENANCE))


def _provenance(ck: GGUFCheckpoint, gguf_path: Path) -> dict[str, Any]:
    """What ``mrr_jax_convert.json`` says: the converter, and the GGUF file's name and size
    (no time stamp: converting again writes the same bytes)."""
    return {"converter": "mrr_jax.convert", "format": 1, "gguf": gguf_path.name,
            "gguf_size": gguf_path.stat().st_size,
            "architecture": ck.metadata.get("general.architecture")}


def _write_checkpoint(ck: GGUFCheckpoint, out: Path, gguf_path: Path) -> None:
    """Every file of the HF directory into ``out`` (an existing empty directory)."""
    _write_json(out / PROVENANCE, _provenance(ck, gguf_path))
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


def _check_out(out: Path, force: bool) -> None:
    """``out`` may take the conversion: absent, empty, or -- with ``force`` -- an earlier
    conversion; else ``FileExistsError`` saying why."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if not _is_nonempty_dir(out):
        return
    ours = is_conversion(out)
    if ours and not force:
        raise FileExistsError(f"{out} already exists and is not empty: it holds an earlier "
                              "conversion (use --force to replace it)")
    if not ours:
        raise FileExistsError(
            f"{out} already exists, is not empty and holds no earlier conversion (no "
            f"{PROVENANCE} beside config.json and model.safetensors): --force replaces only a "
            "folder written by python -m mrr_jax.convert, never other files. Choose another "
            "--out, or empty it yourself")


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Convert ``gguf_path`` into the HF directory ``out_dir`` and return its path.

    ``out_dir`` must be absent or empty; with ``force`` it may also hold an earlier conversion
    (:func:`is_conversion`), which is replaced. Anything else is refused
    (``FileExistsError``), also when another process fills it while this one converts.
    ``out_dir`` appears all at once.
    """
    out = Path(out_dir).expanduser().absolute()
    _check_out(out, force)
    ck = read_gguf(gguf_path)  # validate before touching the filesystem
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
        _write_checkpoint(ck, tmp, Path(gguf_path))
        _move_into_place(tmp, out, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Atomically rename ``tmp`` to ``out``; with ``force`` an earlier conversion in ``out`` is
    swapped out (checked again here: the folder may have changed during the conversion)."""
    old = None
    if force and _is_nonempty_dir(out):
        _check_out(out, force)
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
