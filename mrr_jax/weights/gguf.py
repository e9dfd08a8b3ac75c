"""Reading a llama-architecture GGUF file as a Hugging Face Llama checkpoint (numpy only).

``read_gguf(path)`` parses the metadata and gives

* ``hf_config``: a transformers-compatible ``config.json`` dict (``LlamaForCausalLM``);
* ``tensors()``: ``(hf_name, float32 array)`` pairs, streamed one tensor at a time from the
  memory-mapped file, dequantized with ``gguf.quants.dequantize``, in HF layout
  ``(out_features, in_features)`` (GGUF lists dimensions innermost first, so they are reversed),
  with the query/key rows un-permuted back from llama.cpp's rotary interleaving;
* ``tokenizer()``: a fast ``tokenizers.Tokenizer`` rebuilt from ``tokenizer.ggml.*``.

The metadata-to-config mapping (``hf_config_from_metadata``) and the name mapping
(``hf_tensor_name``) are pure functions so they can be tested without a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama",)

_GGUF_MAGIC = b"GGUF"

# llama.cpp token types (tokenizer.ggml.token_type).
_TOKEN_CONTROL = 3
_TOKEN_USER_DEFINED = 4

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_TENSORS = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")
# Tensors that hold no weights of the HF model; checked, then skipped.
_ROPE_FREQS = "rope_freqs.weight"

# Byte-level BPE pre-tokenizers, keyed by tokenizer.ggml.pre (llama.cpp's names).
_GPT2_PRE = ("default", "gpt2", "gpt-2", "mpt", "olmo", "jais")
_DIGITS_GPT2_PRE = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone")
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_PRE = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "dbrx": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


class GGUFError(ValueError):
    """A GGUF file that is unreadable, incomplete or describes an unsupported model."""


def _require(metadata: Mapping[str, Any], key: str) -> Any:
    if key not in metadata:
        raise KeyError(f"GGUF metadata key {key!r} is missing (required to build the config)")
    return metadata[key]


def hf_config_from_metadata(
    metadata: Mapping[str, Any], tensor_names: Iterable[str] = ()
) -> dict[str, Any]:
    """A transformers ``config.json`` dict for the model a GGUF's metadata describes.

    ``metadata`` maps GGUF keys (``general.architecture``, ``llama.block_count``, ...) to plain
    Python values; ``tensor_names`` are the GGUF tensor names (used only to decide whether the
    output projection is tied to the embedding: it is when there is no ``output.weight``).

    Raises ``ValueError`` for an unsupported architecture or rope variant and ``KeyError`` for a
    missing required key.
    """
    arch = _require(metadata, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(
            f"unsupported GGUF architecture {arch!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def get(key: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    def req(key: str) -> Any:
        return _require(metadata, f"{arch}.{key}")

    if get("expert_count", 0):
        raise GGUFError(f"{arch} GGUF with experts (mixture of experts) is not supported")
    scaling = get("rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise GGUFError(f"rope scaling {scaling!r} is not supported (only the default rope)")

    hidden = int(req("embedding_length"))
    n_head = int(req("attention.head_count"))
    n_kv = int(get("attention.head_count_kv", n_head))
    head_dim = int(get("attention.key_length", hidden // n_head))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise GGUFError("attention.key_length != attention.value_length is not supported")
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise GGUFError(f"partial rotary embedding (rope dim {rope_dim} != head_dim {head_dim})")

    vocab_size = get("vocab_size")
    if vocab_size is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise KeyError(f"GGUF metadata key '{arch}.vocab_size' is missing (and no token list)")
        vocab_size = len(tokens)

    rope_theta = float(get("rope.freq_base", 10000.0))
    names = set(tensor_names)
    tied = "output.weight" not in names
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(vocab_size),
        "hidden_size": hidden,
        "intermediate_size": int(req("feed_forward_length")),
        "num_hidden_layers": int(req("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(req("context_length")),
        "rms_norm_eps": float(req("attention.layer_norm_rms_epsilon")),
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def hf_tensor_name(gguf_name: str) -> str:
    """The Hugging Face Llama name of a GGUF tensor (``blk.3.attn_q.weight`` ->
    ``model.layers.3.self_attn.q_proj.weight``); ``KeyError`` for an unknown name."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    m = _LAYER_RE.match(gguf_name)
    if m and m.group(2) in _LAYER_TENSORS:
        return f"model.layers.{m.group(1)}.{_LAYER_TENSORS[m.group(2)]}"
    raise KeyError(f"GGUF tensor {gguf_name!r} has no Hugging Face Llama counterpart")


def required_tensor_names(num_layers: int, tied: bool) -> list[str]:
    """The GGUF tensor names a llama model with ``num_layers`` blocks must contain."""
    names = ["token_embd.weight", "output_norm.weight"]
    if not tied:
        names.append("output.weight")
    names += [f"blk.{i}.{suffix}" for i in range(num_layers) for suffix in _LAYER_TENSORS]
    return names


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a q/k projection.

    ``w``: (n_head * head_dim, in_features) as stored in GGUF (rows interleaved per head);
    returns the same shape in Hugging Face's half-split rotary order.
    """
    rows, cols = w.shape
    if rows % (2 * n_head):
        raise GGUFError(f"cannot un-permute a ({rows}, {cols}) projection over {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


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


def _split_merge(merge: str) -> tuple[str, str]:
    parts = merge.split(" ")
    if len(parts) != 2:
        raise GGUFError(f"malformed BPE merge {merge!r} in tokenizer.ggml.merges")
    return parts[0], parts[1]


def _byte_level_pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre is None or pre in _GPT2_PRE:
        return byte_level
    if pre in _DIGITS_GPT2_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _SPLIT_PRE:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_SPLIT_PRE[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    known = sorted({*_GPT2_PRE, *_DIGITS_GPT2_PRE, *_SPLIT_PRE})
    raise GGUFError(f"unsupported tokenizer.ggml.pre {pre!r}; supported: {', '.join(known)}")


def build_tokenizer(metadata: Mapping[str, Any]) -> Tokenizer:
    """A fast byte-level BPE ``Tokenizer`` from ``tokenizer.ggml.*`` metadata (model ``gpt2``).

    Control tokens (type 3) become special added tokens, user-defined ones (type 4) plain added
    tokens, so they are matched whole. BOS/EOS are added by the post-processor only when the file
    sets ``tokenizer.ggml.add_bos_token`` / ``add_eos_token``.
    """
    kind = _require(metadata, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(
            f"unsupported tokenizer.ggml.model {kind!r}; supported: 'gpt2' (byte-level BPE)"
        )
    tokens = list(_require(metadata, "tokenizer.ggml.tokens"))
    merges = [_split_merge(m) for m in _require(metadata, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GGUFError("tokenizer.ggml.tokens contains duplicate tokens")

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _byte_level_pre_tokenizer(metadata.get("tokenizer.ggml.pre"))
    tok.decoder = decoders.ByteLevel()

    types = metadata.get("tokenizer.ggml.token_type") or ()
    control = [t for t, k in zip(tokens, types) if k == _TOKEN_CONTROL]
    user = [t for t, k in zip(tokens, types) if k == _TOKEN_USER_DEFINED]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])

    steps: list[processors.PostProcessor] = [processors.ByteLevel(trim_offsets=False)]
    bos_id = metadata.get("tokenizer.ggml.bos_token_id")
    eos_id = metadata.get("tokenizer.ggml.eos_token_id")
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token")) and bos_id is not None
    add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token")) and eos_id is not None
    if add_bos or add_eos:
        pre = [tokens[bos_id]] if add_bos else []
        post = [tokens[eos_id]] if add_eos else []
        single = " ".join([*pre, "$A", *post])
        pair = " ".join(
            [*pre, "$A", *post, *(f"{t}:1" for t in pre), "$B:1", *(f"{t}:1" for t in post)]
        )
        specials = [(tokens[i], i) for i, on in ((bos_id, add_bos), (eos_id, add_eos)) if on]
        steps.append(
            processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
        )
    tok.post_processor = steps[0] if len(steps) == 1 else processors.Sequence(steps)
    return tok


def special_tokens_from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``{"bos_token": str, "bos_token_id": int, ...}`` for the bos/eos/pad/unk the file sets."""
    tokens = _require(metadata, "tokenizer.ggml.tokens")
    keys = {
        "bos": "bos_token_id",
        "eos": "eos_token_id",
        "pad": "padding_token_id",
        "unk": "unknown_token_id",
    }
    out: dict[str, Any] = {}
    for name, key in keys.items():
        idx = metadata.get(f"tokenizer.ggml.{key}")
        if idx is None:
            continue
        if not 0 <= int(idx) < len(tokens):
            raise GGUFError(f"tokenizer.ggml.{key} = {idx} is outside the vocabulary")
        out[f"{name}_token"] = tokens[int(idx)]
        out[f"{name}_token_id"] = int(idx)
    return out


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
    except Exception as e:  # truncated or corrupt: the reader raises assorted errors
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
        return [
            (hf_tensor_name(t.name), tuple(int(d) for d in reversed(t.shape)))
            for t in self._weight_tensors()
        ]

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(hf_name, float32 array)`` one tensor at a time, in file order.

        Matrices are (out_features, in_features), e.g. q_proj (heads*head_dim, hidden),
        embed_tokens (vocab, hidden); norms are (hidden,).
        """
        n_head = self.hf_config["num_attention_heads"]
        n_kv = self.hf_config["num_key_value_heads"]
        for t in self._weight_tensors():
            name = hf_tensor_name(t.name)
            w = _dequantize(t)
            if t.name.endswith(".attn_q.weight"):
                w = unpermute_qk(w, n_head)
            elif t.name.endswith(".attn_k.weight"):
                w = unpermute_qk(w, n_kv)
            yield name, w

    def tokenizer(self) -> Tokenizer:
        """The fast tokenizer described by the file's ``tokenizer.ggml.*`` metadata."""
        return build_tokenizer(self.metadata)


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
