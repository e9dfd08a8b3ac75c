"""The embedded example dataset: real English text that ships with every Python, no downloads.

Text: the docstrings of the Python standard library installed with the interpreter that runs
this (``sysconfig.get_paths()["stdlib"]``). They are real, edited technical English, present
on every fresh machine, and their structure gives natural query/passage pairs: by PEP 257 a
docstring is a one-line summary, a blank line, then the elaboration. The summary ("Return the
absolute version of a path.") is the query; the rest of the docstring is its relevant passage.

How: every ``.py`` file under the stdlib folder is parsed with :mod:`ast` -- never imported, so
nothing runs and nothing depends on which optional modules import -- skipping private modules
(any name part starting with ``_``), tests (``test``, ``tests``, ``idle_test``, ``test_*``),
demos (``turtledemo``), ``ensurepip``, ``pydoc_data`` and ``site-packages``. Each module
docstring, public function/class docstring and public method docstring (one class level) whose
summary has 3..40 words and whose rest has at least 15 words gives one (query, passage) pair;
a single-paragraph docstring whose first line ends with "." is split after that line. Texts are
whitespace-collapsed; passages are cut to the first ``--max-words`` words (default 200, the
number cut is in ``stats.json``). Repeated summaries or passages keep their first occurrence
(by qualified name). If more than ``--max-docs`` pairs remain (default 3000), a deterministic
sample is taken (lowest SHA-1 of the qualified name). Document ids are qualified names
(``json.dumps``), query ids ``q:`` + qualified name; the title is the qualified name.

Output (``python -m mrr_jax.data.example OUT``):

- ``OUT/corpus.jsonl``, ``OUT/queries.jsonl``, ``OUT/qrels/{train,dev,test}.tsv`` (BEIR): splits
  by module -- SHA-1 of the module name, buckets 0-7 train, 8 dev, 9 test (about 80/10/10) --
  so no module is in two splits; the corpus holds every passage of every split.
- ``OUT/bm25/<split>.trec``: BM25 (``bm25s``, PyStemmer English stemming, English stopwords)
  over the whole corpus (title + text), top 100 per query, zero-score hits dropped.
- ``OUT/train.jsonl``, ``OUT/dev.jsonl``: FlagEmbedding training rows -- ``query``, ``pos``
  (the relevant passage) and ``neg`` (up to 15 BM25 hard negatives from ranks 1..30 that are
  not relevant); passages are ``title + " " + text`` as ``Doc.passage``; no teacher scores.
- ``OUT/train_bm25.jsonl``: the same training rows with every passage's BM25 score (the same
  index, full precision, not only the top 100) as ``pos_scores`` / ``neg_scores``: BM25 as the
  external teacher of docs/method.md §5.4, the only teacher this offline dataset has.
- ``OUT/stats.json``: counts, average lengths in words, BM25 RR@10 / nDCG@10 / R@100 per split.

Deterministic: the same Python gives byte-identical files (another Python version has other
docstrings, hence another dataset; ``stats.json`` records the version).
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import logging
import os
import platform
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.data import beir, trec
from mrr_jax.data.fileio import PathLike, atomic_write
from mrr_jax.data.flag import FlagRow, write_flag
from mrr_jax.data.metrics import evaluate_run, format_table
from mrr_jax.data.records import Doc, Qrels, Run

SPLITS = ("train", "dev", "test")
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "turtledemo", "ensurepip",
                       "pydoc_data", "lib-dynload", "__pycache__"})
METRICS = ("RR@10", "nDCG@10", "R@100")


@dataclass(frozen=True, slots=True)
class Entry:
    """One harvested docstring: ``query`` (its summary) and ``passage`` (the rest)."""

    module: str
    qualname: str
    query: str
    passage: str


def stdlib_root() -> Path:
    """The folder of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _skip_part(name: str) -> bool:
    return name.startswith(("_", "test", "config-")) or name in SKIP_DIRS


def iter_source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(module name, file)`` of each public, non-test stdlib source file, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _skip_part(d))
        rel = Path(dirpath).relative_to(root).parts
        for fn in sorted(filenames):
            if not fn.endswith(".py") or (_skip_part(fn[:-3]) and fn != "__init__.py"):
                continue
            parts = list(rel) + ([] if fn == "__init__.py" else [fn[:-3]])
            if parts and all(p.isidentifier() for p in parts):
                yield ".".join(parts), Path(dirpath) / fn


def split_docstring(doc: str) -> tuple[str, str] | None:
    """``(summary, rest)`` of a cleaned docstring, whitespace-collapsed, or None if no rest."""
    doc = doc.strip()
    parts = re.split(r"\n\s*\n", doc, maxsplit=1)
    if len(parts) < 2:
        first, _, rest = doc.partition("\n")
        if not rest or not first.rstrip().endswith("."):
            return None
        parts = [first, rest]
    summary, rest = (" ".join(p.split()) for p in parts)
    return (summary, rest) if summary and rest else None


def _entries(tree: ast.Module, module: str, min_words: int, max_query_words: int,
             ) -> Iterator[Entry]:
    def pair(node: ast.AST, qualname: str) -> Entry | None:
        doc = ast.get_docstring(node)  # type: ignore[arg-type]
        split = split_docstring(doc) if doc else None
        if split is None:
            return None
        query, passage = split
        if not 3 <= len(query.split()) <= max_query_words or len(passage.split()) < min_words:
            return None
        return Entry(module, qualname, query, passage)

    def walk(body: list[ast.stmt], prefix: str, depth: int) -> Iterator[Entry | None]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                    and not node.name.startswith("_"):
                yield pair(node, f"{prefix}.{node.name}")
                if isinstance(node, ast.ClassDef) and depth == 0:
                    yield from walk(node.body, f"{prefix}.{node.name}", 1)

    for e in [pair(tree, module), *walk(tree.body, module, 0)]:
        if e is not None:
            yield e


def harvest(root: Path | None = None, *, min_words: int = 15,
            max_query_words: int = 40) -> list[Entry]:
    """All usable docstring pairs of the stdlib at ``root``, deduplicated, by qualified name.

    Parsing is done once per process and arguments (a few seconds for the whole stdlib).
    """
    root = stdlib_root() if root is None else Path(root)
    return list(_harvest(root, min_words, max_query_words))


@functools.lru_cache(maxsize=4)
def _harvest(root: Path, min_words: int, max_query_words: int) -> tuple[Entry, ...]:
    found: list[Entry] = []
    for module, path in iter_source_files(root):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. SyntaxWarning: invalid escape sequence
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue
        found.extend(_entries(tree, module, min_words, max_query_words))
    found.sort(key=lambda e: e.qualname)
    out, names, queries, passages = [], set(), set(), set()
    for e in found:
        q = e.query.lower()
        if e.qualname in names or q in queries or e.passage in passages:
            continue
        names.add(e.qualname)
        queries.add(q)
        passages.add(e.passage)
        out.append(e)
    return tuple(out)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_of(module: str) -> str:
    """The split of a module: SHA-1 of its name, buckets 0-7 train, 8 dev, 9 test."""
    bucket = int(_sha1(module)[:8], 16) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def _bm25(corpus: dict[str, Doc]):
    """A ``bm25s`` index over ``Doc.passage`` and a tokenizer for queries (PyStemmer English
    stemming, English stopwords)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it ships at DEBUG
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize([corpus[d].passage for d in corpus], stopwords="en",
                            stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)

    def tokenize(texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False,
                              show_progress=False)

    return retriever, tokenize


def bm25_run(corpus: dict[str, Doc], queries: dict[str, str], k: int, index=None) -> Run:
    """BM25 top-``k`` over ``corpus`` (``Doc.passage``) for ``queries``; zero scores dropped.

    ``bm25s`` with PyStemmer English stemming and English stopwords; scores rounded to 6
    decimals (they are float32). ``index``: ``_bm25(corpus)``, built here if not given.
    """
    qids = list(queries)
    if not qids:
        return {}
    docids = list(corpus)
    retriever, tokenize = index or _bm25(corpus)
    idx, scores = retriever.retrieve(tokenize([queries[q] for q in qids]),
                                     k=min(k, len(docids)), show_progress=False, n_threads=1)
    run: Run = {}
    for qid, row_i, row_s in zip(qids, idx.tolist(), scores.tolist()):
        run[qid] = {docids[i]: round(s, 6) for i, s in zip(row_i, row_s) if s > 0}
    return run


def bm25_scores(corpus: dict[str, Doc], queries: dict[str, str],
                index=None) -> dict[str, np.ndarray]:
    """Every query's BM25 score of every document (in ``corpus`` order), float32, as
    :func:`bm25_run` scores them (``index`` as there)."""
    retriever, tokenize = index or _bm25(corpus)
    qids = list(queries)
    return {q: np.asarray(retriever.get_scores(t), np.float32)
            for q, t in zip(qids, tokenize([queries[q] for q in qids]))}


def _words(text: str) -> int:
    return len(text.split())


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def build(out: PathLike, *, max_docs: int = 3000, max_words: int = 200, top_k: int = 100,
          negatives: int = 15, neg_depth: int = 30, root: Path | None = None) -> dict[str, Any]:
    """Build the example dataset into ``out`` (see the module docstring); return the stats."""
    if max_docs < 10 or max_words < 1 or top_k < 1 or negatives < 1 or neg_depth < 1:
        raise ValueError("max_docs >= 10 and positive max_words, top_k, negatives, neg_depth")
    out = Path(out)
    entries = harvest(root)
    eligible = len(entries)
    if len(entries) > max_docs:
        entries = sorted(sorted(entries, key=lambda e: _sha1(e.qualname))[:max_docs],
                         key=lambda e: e.qualname)
    corpus: dict[str, Doc] = {}
    queries: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    qrels: dict[str, Qrels] = {s: {} for s in SPLITS}
    modules: dict[str, set[str]] = {s: set() for s in SPLITS}
    truncated = 0
    for e in entries:
        words = e.passage.split()
        truncated += len(words) > max_words
        corpus[e.qualname] = Doc(docid=e.qualname, title=e.qualname,
                                 text=" ".join(words[:max_words]))
        split = split_of(e.module)
        qid = f"q:{e.qualname}"
        queries[split][qid] = e.query
        qrels[split][qid] = {e.qualname: 1}
        modules[split].add(e.module)

    beir.write_corpus(out / "corpus.jsonl", corpus)
    all_queries = {q: t for s in SPLITS for q, t in queries[s].items()}
    beir.write_queries(out / "queries.jsonl", dict(sorted(all_queries.items())))
    stats_bm25: dict[str, dict[str, float]] = {}
    flag_rows: dict[str, int] = {}
    index = _bm25(corpus)
    for split in SPLITS:
        beir.write_qrels(out / "qrels" / f"{split}.tsv", qrels[split])
        run = bm25_run(corpus, queries[split], top_k, index)
        trec.write_run(out / "bm25" / f"{split}.trec", run, tag="bm25")
        if qrels[split]:
            stats_bm25[split] = {m: round(v, 4) for m, v in
                                 evaluate_run(run, qrels[split], METRICS).items()}
        if split in ("train", "dev"):
            teacher = bm25_scores(corpus, queries[split], index) if split == "train" else None
            rows = list(_flag_rows(corpus, queries[split], qrels[split], run, negatives,
                                   neg_depth, teacher))
            flag_rows[split] = write_flag(out / f"{split}.jsonl", [
                replace(r, pos_scores=None, neg_scores=None) for r in rows])
            if teacher is not None:  # the same rows with BM25 as the external teacher
                write_flag(out / "train_bm25.jsonl", rows)

    stats = {
        "source": f"docstrings of the Python {platform.python_version()} standard library "
                  "(parsed with ast, not imported)",
        "python": platform.python_version(),
        "params": {"max_docs": max_docs, "max_words": max_words, "top_k": top_k,
                   "negatives": negatives, "neg_depth": neg_depth},
        "eligible_pairs": eligible,
        "docs": len(corpus),
        "truncated_passages": truncated,
        "queries": {s: len(queries[s]) for s in SPLITS},
        "modules": {s: len(modules[s]) for s in SPLITS},
        "avg_words": {"passage": _mean([_words(d.text) for d in corpus.values()]),
                      "query": {s: _mean([_words(t) for t in queries[s].values()])
                                for s in SPLITS}},
        "bm25": stats_bm25,
        "flag_rows": flag_rows,
    }
    with atomic_write(out / "stats.json") as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


def _flag_rows(corpus: dict[str, Doc], queries: dict[str, str], qrels: Qrels, run: Run,
               negatives: int, neg_depth: int,
               teacher: dict[str, np.ndarray] | None = None) -> Iterator[FlagRow]:
    """FlagEmbedding rows: positives from qrels, hard negatives from BM25 ranks 1..neg_depth;
    with ``teacher`` (:func:`bm25_scores`), every passage's BM25 score as its teacher score."""
    position = {d: i for i, d in enumerate(corpus)}
    for qid in sorted(queries):
        relevant = sorted(d for d, r in qrels[qid].items() if r > 0)
        ranked = [d for d, _ in trec.ranking(run.get(qid, {}))[:neg_depth]]
        neg = [d for d in ranked if d not in relevant][:negatives]
        if not neg:
            continue
        scores = {}
        if teacher is not None:
            t = teacher[qid]
            scores = {"pos_scores": [round(float(t[position[d]]), 4) for d in relevant],
                      "neg_scores": [round(float(t[position[d]]), 4) for d in neg]}
        yield FlagRow(query=queries[qid], pos=[corpus[d].passage for d in relevant],
                      neg=[corpus[d].passage for d in neg], **scores)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.data.example",
        description="Build the example dataset from the Python standard library's docstrings "
                    "(summary line = query, rest = passage): a BEIR folder, BM25 top-k runs, "
                    "FlagEmbedding train/dev JSONL and stats.json. No downloads; deterministic.")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--max-docs", type=int, default=3000,
                   help="at most this many passages (deterministic sample; default %(default)s)")
    p.add_argument("--max-words", type=int, default=200,
                   help="cut passages to this many words (default %(default)s)")
    p.add_argument("--top-k", type=int, default=100, help="BM25 depth (default %(default)s)")
    p.add_argument("--negatives", type=int, default=15,
                   help="hard negatives per training row (default %(default)s)")
    p.add_argument("--neg-depth", type=int, default=30,
                   help="hard negatives come from BM25 ranks 1..this (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that is not an earlier example build")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not (out / "stats.json").is_file() \
            and not args.force:
        print(f"error: {out} is not empty and holds no earlier example build (stats.json); "
              "use --force to write into it", file=sys.stderr)
        return 2
    try:
        stats = build(out, max_docs=args.max_docs, max_words=args.max_words, top_k=args.top_k,
                      negatives=args.negatives, neg_depth=args.neg_depth)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {stats['docs']} passages from {stats['source']}; queries "
          + ", ".join(f"{s} {n}" for s, n in stats["queries"].items()))
    print(format_table([(f"bm25 {s}", m) for s, m in stats["bm25"].items()], METRICS,
                       first="run"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
