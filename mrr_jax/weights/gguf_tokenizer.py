"""The tokenizer of a GGUF file: a fast byte-level BPE ``tokenizers.Tokenizer`` rebuilt from
its ``tokenizer.ggml.*`` metadata, and its special tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from mrr_jax.weights.gguf_config import GGUFError, require_key

# llama.cpp token types (tokenizer.ggml.token_type).
_TOKEN_CONTROL = 3
_TOKEN_USER_DEFINED = 4

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
    kind = require_key(metadata, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(
            f"unsupported tokenizer.ggml.model {kind!r}; supported: 'gpt2' (byte-level BPE)"
        )
    tokens = list(require_key(metadata, "tokenizer.ggml.tokens"))
    merges = [_split_merge(m) for m in require_key(metadata, "tokenizer.ggml.merges")]
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
    tokens = require_key(metadata, "tokenizer.ggml.tokens")
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
