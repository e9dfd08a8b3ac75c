"""The re-ranker's input template and its tokenization.

    [bos] + ids("A: " + query) + ids("\\n")   query segment   (never compressed)
    ids("B: " + passage)                      passage segment (the only compressed part)
    ids("\\n") + ids(prompt)                   prompt segment  (never compressed; its last
                                              token is the scoring token)

Every piece is tokenized without special tokens and BOS is added by hand, as in the authors'
code. Truncation: the query text is cut to ``query_max_length`` tokens (default
``max_length * 3 // 4``, the authors' default), then the passage is cut so that the query and
passage segments together fit in ``max_length`` tokens. The prompt is never cut, so a sequence
is at most ``max_length + len(prompt segment)`` tokens. Every cut is counted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import tokenizers

DEFAULT_PROMPT = "Predict whether passage B contains an answer to query A."
PASSAGE_MARKER = "B:"  # the passage segment is ids("B: " + passage); windows repeat ids("B:")


def passage_room(query_length: int, max_length: int) -> int:
    """Passage tokens a pair keeps beside a query segment of ``query_length`` tokens: the query
    and passage segments together fit in ``max_length`` (at least one passage token)."""
    return max(max_length - query_length, 1)


@dataclasses.dataclass(frozen=True)
class EncodedPair:
    """One tokenized (query, passage) pair, kept as its three segments."""

    query: tuple[int, ...]  # bos + "A: " + query + "\n"
    passage: tuple[int, ...]  # "B: " + passage
    prompt: tuple[int, ...]  # "\n" + prompt
    truncated: bool = False

    @property
    def input_ids(self) -> list[int]:
        return [*self.query, *self.passage, *self.prompt]

    def __len__(self) -> int:
        return len(self.query) + len(self.passage) + len(self.prompt)

    @classmethod
    def from_ids(cls, input_ids: Sequence[int], query_length: int,
                 prompt_length: int) -> EncodedPair:
        """Splits an already-built sequence by its segment lengths (the token-level API)."""
        n = len(input_ids)
        if query_length < 1 or prompt_length < 1 or query_length + prompt_length > n:
            raise ValueError(f"segment lengths query={query_length}, prompt={prompt_length} do "
                             f"not fit a sequence of {n} tokens (each must be >= 1)")
        ids = tuple(int(i) for i in input_ids)
        return cls(ids[:query_length], ids[query_length:n - prompt_length],
                   ids[n - prompt_length:])


def load_tokenizer(path: str | Path) -> tuple[tokenizers.Tokenizer, int | None]:
    """(tokenizer, bos id or None) from a model directory's ``tokenizer.json``."""
    path = Path(path)
    f = path / "tokenizer.json"
    if not f.is_file():
        raise FileNotFoundError(
            f"{path}: no tokenizer.json, so text cannot be tokenized. Put the model's fast "
            "tokenizer there, or score token ids with Reranker.score_tokens(...)."
        )
    tok = tokenizers.Tokenizer.from_file(str(f))
    bos = None
    tc = path / "tokenizer_config.json"
    if tc.is_file():
        spec = json.loads(tc.read_text()).get("bos_token")
        text = spec.get("content") if isinstance(spec, dict) else spec
        bos = tok.token_to_id(text) if text else None
    return tok, bos


class PairTemplate:
    """Builds ``EncodedPair``s from text with a tokenizer, a BOS id and a prompt."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, bos_id: int,
                 prompt: str = DEFAULT_PROMPT) -> None:
        if not prompt:
            raise ValueError("the prompt must not be empty (its last token is scored)")
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self.sep = tuple(self._ids("\n"))
        self.prompt = self.sep + tuple(self._ids(prompt))
        self.marker = tuple(self._ids(PASSAGE_MARKER))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode(self, pairs: Sequence[tuple[str, str]], max_length: int = 512,
               query_max_length: int | None = None) -> list[EncodedPair]:
        """Tokenizes (query, passage) pairs; empty or non-string texts are errors naming the
        pair."""
        qmax = max_length * 3 // 4 if query_max_length is None else query_max_length
        if qmax < 1 or max_length < 1:
            raise ValueError("max_length and query_max_length must be >= 1")
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"pair {i}: expected a (query, passage) pair, got {pair!r:.80}")
            for name, text in zip(("query", "passage"), pair):
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"pair {i}: {name} is empty or not a string: {text!r:.80}")
        enc = self.tokenizer.encode_batch_fast if hasattr(
            self.tokenizer, "encode_batch_fast") else self.tokenizer.encode_batch
        q_ids = enc(["A: " + q for q, _ in pairs], add_special_tokens=False)
        p_ids = enc(["B: " + p for _, p in pairs], add_special_tokens=False)
        out = []
        for q, p in zip(q_ids, p_ids):
            q, p = q.ids, p.ids
            cut = len(q) > qmax
            query = (self.bos_id, *q[:qmax], *self.sep)
            room = passage_room(len(query), max_length)
            cut |= len(p) > room
            out.append(EncodedPair(query, tuple(p[:room]), self.prompt, cut))
        return out


def one_token_id(tokenizer, text: str, path, instead: str) -> int:
    """The id of ``text``, which must be one token for this tokenizer (the model at ``path``;
    ``instead`` names what to pass otherwise)."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"{path}: {text!r} is {len(ids)} tokens for this tokenizer; pass "
                         f"{instead} to choose the head's row")
    return ids[0]
