"""The benchmark's pairs: real text that ships with Python, tokenized to one exact length.

A standard-library module's docstring summary line (continued by the rest of that docstring) is
the query, cut to a fixed number of tokens, and its docstrings (continued by other modules' when
short) are the passage, cut so that every pair is exactly ``seq_len`` tokens with the same
segment lengths (one compiled program per plan).
"""

from __future__ import annotations

import ast
import functools
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from mrr_jax.inputs.template import EncodedPair

if TYPE_CHECKING:
    from mrr_jax.inference.reranker import Reranker

QUERY_SEGMENT = 24  # tokens of the query segment (bos + "A: " + query + "\n"): a bucket size


@functools.cache
def stdlib_documents() -> tuple[tuple[str, str], ...]:
    """(summary line, rest) of every top-level standard-library module with a docstring.

    "rest" is the module docstring after its first line, then the docstrings of its classes
    and functions. Read with ``ast`` (no module is imported), in file-name order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        doc = ast.get_docstring(tree)
        if not doc or not doc.strip().splitlines()[0].strip():
            continue
        summary, _, rest = doc.strip().partition("\n")
        inner = [ast.get_docstring(node) for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        body = "\n\n".join(t.strip() for t in [rest, *inner] if t and t.strip())
        if body:
            docs.append((summary.strip(), body))
    if not docs:
        raise RuntimeError(f"no documented modules under {root}: cannot build benchmark pairs")
    return tuple(docs)


def text_pairs(n: int, min_chars: int) -> list[tuple[str, str]]:
    """``n`` deterministic (query, passage) pairs; each passage has >= ``min_chars`` characters.

    Pair i: module ``i % M``'s summary line, continued by the rest of its docstring, is the
    query (``make_pairs`` cuts it to a fixed number of tokens); its text is the passage start,
    continued by other modules' texts (a different stride on each pass over the M modules)."""
    docs = stdlib_documents()
    m = len(docs)
    pairs = []
    for i in range(n):
        summary, passage = docs[i % m]
        step = 1 + i // m
        j = i % m
        while len(passage) < min_chars:
            j = (j + step) % m
            passage += "\n\n" + docs[j][1]
        pairs.append((f"{summary} {docs[i % m][1][:400]}", passage))
    return pairs


def make_pairs(rr: Reranker, n: int, seq_len: int) -> list[EncodedPair]:
    """``n`` tokenized pairs, each exactly ``seq_len`` tokens with the same segment lengths.

    The query segment is ``QUERY_SEGMENT`` tokens (a quarter of the room if that is less), the
    prompt segment is fixed, the passage fills the rest; uniform lengths mean one compiled
    program per plan (mrr_jax) and no padding (PyTorch)."""
    probe = rr.encode([("q", "p")], query_max_length=1)[0]
    prompt_len, sep_len = len(probe.prompt), len(probe.query) - 2  # query: bos, "q"-ish, sep
    max_length = seq_len - prompt_len  # query + passage segments
    query_cap = min(QUERY_SEGMENT, max_length // 4) - 1 - sep_len
    if query_cap < 1:
        raise ValueError(f"--seq-len {seq_len} is too short: the prompt segment alone is "
                         f"{prompt_len} tokens; use at least {prompt_len + 4 * (sep_len + 2)}")
    encoded = rr.encode(text_pairs(n, min_chars=8 * seq_len), max_length=max_length,
                        query_max_length=query_cap)
    shapes = {(len(e.query), len(e.passage), len(e.prompt)) for e in encoded}
    if len(shapes) != 1 or len(encoded[0]) != seq_len:
        raise RuntimeError(f"pairs are not all {seq_len} tokens with equal segments: {shapes}")
    return encoded
