"""Reading a llama-architecture GGUF file as a Hugging Face Llama checkpoint (numpy only).

``read_gguf(path)`` parses the metadata and gives

* ``hf_config``: a transformers-compatible ``config.json`` dict (``LlamaForCausalLM``);
* ``tensors()``: ``(hf_name, float32 array)`` pairs, streamed one tensor at a time from the
  memory-mapped file, dequantized with ``gguf.quants.dequantize``, in HF layout
  ``(out_features, in_features)`` (GGUF lists dimensions innermost first, so they are reversed),
  with the query/key rows un-permuted back from llama.cpp's rotary interleaving;
* ``tokenizer()``: a fast ``tokenizers.Tokenizer`` rebuilt from ``tokenizer.ggml.*``.

The metadata-to-config mapping (``hf_config_from_metadata``) and the name mapping
(``hf_tensor_name``) are pure functions so they can be tested without a file: they live in
:mod:`mrr_jax.weights.gguf_config`, the tokenizer in :mod:`mrr_jax.weights.gguf_tokenizer`
(all re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import ml_dtypes
import numpy as np
from tokenizers import Tokenizer

from mrr_jax.weights.gguf_config import (
    SUPPORTED_ARCHITECTURES,
    GGUFError,
    hf_config_from_metadata,
    hf_tensor_name,
    required_tensor_names,
    unpermute_qk,
)
from mrr_jax.weights.gguf_tokenizer import build_tokenizer, special_tokens_from_metadata

__all__ = ["SUPPORTED_ARCHITECTURES", "GGUFCheckpoint", "GGUFError", "build_tokenizer",
           "hf_config_from_metadata", "hf_tensor_name", "read_gguf", "required_tensor_names",
           "special_tokens_from_metadata", "unpermute_qk"]

_GGUF_MAGIC = b"GGUF"
# Tensors that hold no weights of the HF model; checked, then skipped.
_ROPE_FREQS = "rope_freqs.weight"


def _dequantize(tensor: Any) -> np.ndarray:
    """A GGUF tensor as a float32 array, shape = GGUF dims reversed (row-major)."""
    w = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    if np.may_share_memory(w, tensor.data):  # unquantized: do not hand out the memory map
        w = np.array(w)
    w = w.astype(np.float32, copy=False)
    shape = tuple(int(d) for d in reversed(tensor.shape))
    if w.shape != shape:
        w = w.reshape(shape)
    return w


def _open_reader(path: Path) -> gguf.GGUFReader:
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise GGUFError(
            f"{path} is not a GGUF file (starts with {magic!r}, expected {_GGUF_MAGIC!r})"
        )
    try:
        return gguf.GGUFReader(path)
    except (ValueError, IndexError, OverflowError) as e:  # numpy, on a truncated/corrupt file
        raise GGUFError(f"{path} is not a readable GGUF file: {e}") from e


def _read_metadata(reader: gguf.GGUFReader) -> dict[str, Any]:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


@dataclass
class GGUFCheckpoint:
    """A parsed GGUF file: HF config, special tokens, lazily streamed tensors and tokenizer."""

    path: Path
    metadata: dict[str, Any] = field(repr=False)
    hf_config: dict[str, Any]
    special_tokens: dict[str, Any]
    _reader: gguf.GGUFReader = field(repr=False)

    def _weight_tensors(self) -> list[Any]:
        return [t for t in self._reader.tensors if t.name != _ROPE_FREQS]

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(hf_name, shape)`` for every tensor ``tensors()`` yields, in the same order,
        without reading any data."""
        return list(self.source().shapes.items())

    def tensors(self, native: bool = False) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(hf_name, float32 array)`` one tensor at a time, in file order; with
        ``native``, F16 / BF16 tensors keep their stored type (``hf.assemble_params`` converts
        each straight into its target dtype).

        Matrices are (out_features, in_features), e.g. q_proj (heads*head_dim, hidden),
        embed_tokens (vocab, hidden); norms are (hidden,).
        """
        src = self.source()
        for name, shape in src.shapes.items():
            w = np.empty(shape, src.dtype(name))
            src.read_into(name, w)  # dequantized / un-permuted as GGUFSource reads it
            yield name, (w if native else w.astype(np.float32, copy=False))

    def source(self) -> GGUFSource:
        """The tensors as a ``weights.streaming.TensorSource`` (read one at a time, F16 / BF16
        / F32 in their stored type)."""
        return GGUFSource(self)

    def tokenizer(self) -> Tokenizer:
        """The fast tokenizer described by the file's ``tokenizer.ggml.*`` metadata."""
        return build_tokenizer(self.metadata)


class GGUFSource:
    """A GGUF file's tensors by HF name, for ``mrr_jax.weights.streaming.load_params`` (and
    ``shapes`` / ``dtype`` / ``read_into`` as its ``TensorSource``): ``shapes`` is HF layout
    (GGUF dims reversed); F32, F16 and BF16 tensors are read from the memory map in their
    stored type (no float32 copy), quantized ones dequantized to float32 one tensor at a time;
    q/k projections are un-permuted from llama.cpp's rotary interleaving as they are read."""

    _NATIVE = {gguf.GGMLQuantizationType.F32: np.dtype(np.float32),
               gguf.GGMLQuantizationType.F16: np.dtype(np.float16),
               gguf.GGMLQuantizationType.BF16: np.dtype(ml_dtypes.bfloat16)}

    def __init__(self, ckpt: GGUFCheckpoint) -> None:
        self._tensors = {hf_tensor_name(t.name): t for t in ckpt._weight_tensors()}
        self.shapes = {k: tuple(int(d) for d in reversed(t.shape))
                       for k, t in self._tensors.items()}
        self._heads = {".attn_q.weight": ckpt.hf_config["num_attention_heads"],
                       ".attn_k.weight": ckpt.hf_config["num_key_value_heads"]}

    def dtype(self, name: str) -> np.dtype:
        return self._NATIVE.get(self._tensors[name].tensor_type, np.dtype(np.float32))

    def read_into(self, name: str, out: np.ndarray) -> None:
        t = self._tensors[name]
        dt = self._NATIVE.get(t.tensor_type)
        if dt is None:
            w = _dequantize(t)
        else:  # a view of the memory map in its stored type
            w = np.asarray(t.data).reshape(-1).view(np.uint8)[:out.nbytes].view(dt) \
                .reshape(self.shapes[name])
        for suffix, n_head in self._heads.items():
            if t.name.endswith(suffix):
                w = unpermute_qk(w, n_head)
        out[...] = w


def _check_tensors(reader: gguf.GGUFReader, config: Mapping[str, Any], path: Path) -> None:
    present = {t.name: t for t in reader.tensors}
    for name in present:
        if name != _ROPE_FREQS:
            hf_tensor_name(name)  # raises on tensors we would silently drop
    for name in required_tensor_names(config["num_hidden_layers"], config["tie_word_embeddings"]):
        if name not in present:
            raise KeyError(f"required tensor {name!r} is missing from {path}")
    emb = tuple(int(d) for d in reversed(present["token_embd.weight"].shape))
    if emb != (config["vocab_size"], config["hidden_size"]):
        raise GGUFError(
            f"token_embd.weight has shape {emb}, expected "
            f"({config['vocab_size']}, {config['hidden_size']}) from the metadata"
        )
    if _ROPE_FREQS in present:
        freqs = _dequantize(present[_ROPE_FREQS])
        if not np.allclose(freqs, 1.0):
            raise GGUFError(
                f"{path} has a non-trivial {_ROPE_FREQS} tensor (scaled rope, e.g. Llama 3.1); "
                "only the default rope is supported"
            )


def read_gguf(path: str | Path) -> GGUFCheckpoint:
    """Open a GGUF file (memory-mapped) and check it describes a supported, complete model."""
    path = Path(path)
    reader = _open_reader(path)
    metadata = _read_metadata(reader)
    config = hf_config_from_metadata(metadata, (t.name for t in reader.tensors))
    _check_tensors(reader, config, path)
    return GGUFCheckpoint(
        path=path,
        metadata=metadata,
        hf_config=config,
        special_tokens=special_tokens_from_metadata(metadata),
        _reader=reader,
    )
