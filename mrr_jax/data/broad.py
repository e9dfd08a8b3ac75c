"""The broad training set: seven kinds of real text from pinned PyPI and Debian packages, with
queries made from them mechanically in three ways, BM25 hard negatives and BM25 teacher scores.

Training only (a ``train`` split and a small ``dev`` split for model selection): the held-out
sets -- the example set (:mod:`mrr_jax.data.example`, Python stdlib docstrings) and the Debian
Reference transfer set (:mod:`mrr_jax.data.debref`) -- are never read for training, and any
pair whose query or passage is theirs is dropped. Manual pages and FAQs are never read (kept
for a held-out check).

Sources (:mod:`mrr_jax.data.broad_sources`, pinned in :mod:`mrr_jax.data.broad_pins`): the
docstrings, PyPI descriptions, READMEs, shipped docs and license files of the PyPI libraries of
``requirements-dev.txt``; READMEs, documentation, changelogs, release notes and protocol
specifications of 49 Debian 12 packages under ``/usr/share/doc``; ``/usr/share/common-licenses``.
A missing source, or one at another version, is refused with one line naming the ``pip`` or
``apt-get`` command that installs it (``--allow-mismatch``: build from what is installed,
other bytes). Pairs: :mod:`mrr_jax.data.broad_pairs` (which query kind for which text, the
filters, dedup against the held-out sets and within the set, a cap per package and kind).
Passages are cut at ``--max-words`` words (default 200, as the example set).

Output (``python -m mrr_jax.data.broad --out OUT``), the example set's layout:

- ``OUT/corpus.jsonl`` (title: the package; text: the passage), ``OUT/queries.jsonl``,
  ``OUT/qrels/{train,dev}.tsv`` (BEIR): splits by source file (SHA-1 of its path, ``--dev-percent``
  of 100 buckets to dev, default 3), so no file is in both; one relevant passage per query.
- ``OUT/bm25/dev.trec``: BM25 (the example set's ``bm25s`` index over the whole corpus), top
  ``--top-k`` (default 100).
- ``OUT/train.jsonl``, ``OUT/dev.jsonl`` (FlagEmbedding rows: the positive and up to 15 BM25
  hard negatives from ranks 1..30 that are not it) and ``OUT/train_bm25.jsonl`` (the same
  training rows with every passage's BM25 score as ``pos_scores`` / ``neg_scores``, the external
  teacher of docs/method.md §5.4).
- ``OUT/makeup.json`` and ``OUT/makeup.md``: queries per split, source kind and query kind,
  passages per kind, packages and versions read (with a SHA-256 of the files read), drops by
  reason, average lengths, BM25 on dev.

Deterministic: the same sources give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.data import beir, debref, example, trec
from mrr_jax.data.broad_makeup import makeup, write_makeup
from mrr_jax.data.broad_pairs import HeldOut, Pair, dedup, docstring_pairs, document_pairs
from mrr_jax.data.broad_sources import (
    Digest,
    Sources,
    check,
    debian_documents,
    docstrings,
    python_documents,
)
from mrr_jax.data.debref import MissingSource
from mrr_jax.data.example import METRICS, _bm25, _flag_rows, bm25_run
from mrr_jax.data.fileio import PathLike, check_output_folder
from mrr_jax.data.flag import write_flag
from mrr_jax.data.metrics import evaluate_run, format_table
from mrr_jax.data.records import Doc, Qrels

SPLITS = ("train", "dev")


def held_out_default(max_words: int, debref_source: PathLike | None = None,
                     ) -> tuple[HeldOut, dict[str, Any]]:
    """The held-out texts: every pair the example set could draw (the running Python's stdlib
    docstrings) and every section the transfer set keeps (raises ``MissingSource`` when the
    Debian Reference is not installed)."""
    entries = example.harvest()
    sections, version = debref.parse(debref.source_files(debref_source))
    kept, _ = debref.select(sections)
    held = HeldOut.of([e.query for e in entries] + [s.query for s in kept],
                      [e.passage for e in entries] + [s.passage for s in kept], max_words)
    return held, {"example": {"pairs": len(entries), "python": sys.version.split()[0]},
                  "debref": {"sections": len(kept), "version": version}}


def held_out_folders(folders: Sequence[PathLike], max_words: int,
                     ) -> tuple[HeldOut, dict[str, Any]]:
    """The queries and passages of BEIR folders (``corpus.jsonl``, ``queries.jsonl``)."""
    queries: list[str] = []
    passages: list[str] = []
    for f in folders:
        queries.extend(beir.load_queries(Path(f) / "queries.jsonl").values())
        corpus = beir.load_corpus(Path(f) / "corpus.jsonl")
        passages.extend(d.text for d in corpus.values())
    return (HeldOut.of(queries, passages, max_words),
            {"folders": [str(f) for f in folders], "queries": len(queries),
             "passages": len(passages)})


def split_of(unit: str, dev_percent: int) -> str:
    """``dev`` for files whose SHA-1 bucket (of 100) is below ``dev_percent``, else ``train``."""
    bucket = int(hashlib.sha1(unit.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "dev" if bucket < dev_percent else "train"


class _Teacher(Mapping[str, np.ndarray]):
    """Every document's BM25 score for one query at a time, computed when asked (the whole
    matrix would not fit: queries x documents)."""

    def __init__(self, index, queries: Mapping[str, str]) -> None:
        self.retriever, self.tokenize = index
        self.queries = queries

    def __getitem__(self, qid: str) -> np.ndarray:
        tokens = self.tokenize([self.queries[qid]])[0]
        return np.asarray(self.retriever.get_scores(tokens), np.float32)

    def __iter__(self):
        return iter(self.queries)

    def __len__(self) -> int:
        return len(self.queries)


def collect(sources: Sources, *, min_words: int, max_words: int,
            ) -> tuple[list[Pair], dict[str, Any]]:
    """Every candidate pair of the sources, in order, and what was read."""
    py, deb, mismatched = check(sources)
    digest = Digest()
    pairs = list(docstring_pairs(docstrings(sources, digest, min_words=min_words),
                                 min_words=min_words, max_words=max_words))
    docs = [*python_documents(sources, py, digest), *debian_documents(sources, digest)]
    more, headings = document_pairs(docs, min_words=min_words, max_words=max_words)
    read = {"python": {n: {"pinned": sources.python[n][0], "installed": v, **digest.record(n)}
                       for n, (v, _) in py.items()},
            "debian": {n: {"pinned": sources.debian[n], "installed": v, **digest.record(n)}
                       for n, v in deb.items()},
            "version_mismatches": mismatched, "dropped_headings": headings,
            "documents": len(docs)}
    return pairs + more, read


def build(out: PathLike, sources: Sources, *, held_out: tuple[HeldOut, dict[str, Any]],
          cap: int = 300, changelog_cap: int = 100, dev_percent: int = 3, max_words: int = 200,
          min_words: int = 15, top_k: int = 100, negatives: int = 15, neg_depth: int = 30,
          ) -> dict[str, Any]:
    """Build the broad set into ``out`` (see the module docstring); return its make-up."""
    if min(cap, changelog_cap, max_words, min_words, top_k, negatives, neg_depth) < 1 \
            or not 0 < dev_percent < 50:
        raise ValueError("positive caps, max_words, min_words, top_k, negatives and neg_depth; "
                         "0 < dev_percent < 50")
    candidates, read = collect(sources, min_words=min_words, max_words=max_words)
    pairs, dropped = dedup(candidates, held_out[0], cap=cap, max_words=max_words,
                           caps={"changelog": changelog_cap})
    out = Path(out)
    corpus: dict[str, Doc] = {}
    queries: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    qrels: dict[str, Qrels] = {s: {} for s in SPLITS}
    split_by_qid: dict[str, str] = {}
    for p in pairs:
        corpus[p.docid] = Doc(docid=p.docid, title=p.package, text=p.passage)
        split = split_of(p.unit, dev_percent)
        qid = f"q:{p.docid}"
        queries[split][qid] = p.query
        qrels[split][qid] = {p.docid: 1}
        split_by_qid[qid] = split
    beir.write_corpus(out / "corpus.jsonl", corpus)
    beir.write_queries(out / "queries.jsonl",
                       dict(sorted({q: t for s in SPLITS for q, t in queries[s].items()}.items())))
    index = _bm25(corpus)
    rows: dict[str, int] = {}
    bm25: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        beir.write_qrels(out / "qrels" / f"{split}.tsv", qrels[split])
        run = bm25_run(corpus, queries[split], max(top_k, neg_depth), index)
        bm25[split] = {m: round(v, 4) for m, v in evaluate_run(run, qrels[split], METRICS).items()}
        if split == "dev":
            trec.write_run(out / "bm25" / "dev.trec", trec.top_k(run, top_k), tag="bm25")
        teacher = _Teacher(index, queries[split]) if split == "train" else None
        flag = list(_flag_rows(corpus, queries[split], qrels[split], run, negatives,
                               neg_depth, teacher))
        rows[split] = write_flag(out / f"{split}.jsonl", [
            replace(r, pos_scores=None, neg_scores=None) for r in flag])
        if teacher is not None:
            write_flag(out / "train_bm25.jsonl", flag)
    params = {"cap": cap, "changelog_cap": changelog_cap, "dev_percent": dev_percent,
              "max_words": max_words, "min_words": min_words, "top_k": top_k,
              "negatives": negatives, "neg_depth": neg_depth,
              "allow_mismatch": sources.allow_mismatch}
    info = makeup(pairs, split_by_qid, read=read, dropped=dropped, held_out=held_out[1],
                  params=params, bm25=bm25, rows=rows, candidates=len(candidates))
    write_makeup(out, info)
    return info


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.data.broad",
        description="Build the broad training set from pinned PyPI and Debian packages (seven "
                    "kinds of text; heading, first-sentence and docstring-summary queries), "
                    "deduplicated against the example and transfer sets: BEIR folder, BM25 "
                    "negatives and teacher scores, makeup.json/md. Offline; deterministic.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that holds no earlier build")
    p.add_argument("--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
                   help="site-packages holding the pinned PyPI packages (default: this one)")
    p.add_argument("--doc-root", type=Path, default=Path("/usr/share/doc"))
    p.add_argument("--licenses", type=Path, default=Path("/usr/share/common-licenses"))
    p.add_argument("--dpkg-status", type=Path, default=Path("/var/lib/dpkg/status"))
    p.add_argument("--allow-mismatch", action="store_true",
                   help="read installed versions other than the pinned ones (other bytes)")
    p.add_argument("--held-out", type=Path, action="append", default=None, metavar="BEIR_DIR",
                   help="drop the queries and passages of these BEIR folders (repeatable); "
                        "default: the example set and the Debian Reference transfer set")
    p.add_argument("--debref-source", type=Path, default=None,
                   help="the Debian Reference's HTML folder (default: the installed package)")
    for flag, default, what in (("--cap", 300, "pairs per package and source kind"),
                                ("--changelog-cap", 100, "changelog pairs per package"),
                                ("--dev-percent", 3, "percent of the files in dev"),
                                ("--max-words", 200, "cut passages to this many words"),
                                ("--min-words", 15, "passages have at least this many words"),
                                ("--top-k", 100, "BM25 depth of bm25/dev.trec"),
                                ("--negatives", 15, "hard negatives per row"),
                                ("--neg-depth", 30, "negatives from BM25 ranks 1..this")):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default %(default)s)")
    return p


def _build_from(args: argparse.Namespace) -> dict[str, Any]:
    """Check the output folder, find the held-out texts, build: the command line's work."""
    check_output_folder(args.out, "makeup.json", force=args.force)
    sources = Sources(site=args.site, doc_root=args.doc_root, licenses=args.licenses,
                      dpkg_status=args.dpkg_status, allow_mismatch=args.allow_mismatch)
    held = (held_out_folders(args.held_out, args.max_words) if args.held_out
            else held_out_default(args.max_words, args.debref_source))
    return build(args.out, sources, held_out=held, cap=args.cap,
                 changelog_cap=args.changelog_cap, dev_percent=args.dev_percent,
                 max_words=args.max_words, min_words=args.min_words, top_k=args.top_k,
                 negatives=args.negatives, neg_depth=args.neg_depth)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: a missing source, bad input)."""
    start = time.perf_counter()
    args = _parser().parse_args(argv)
    try:
        info = _build_from(args)
    except (MissingSource, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in info["version_mismatches"]:
        print(f"warning: read another version than pinned: {line}", file=sys.stderr)
    print(f"{args.out}: {info['queries']['train']['total']} training and "
          f"{info['queries']['dev']['total']} dev queries, {info['passages']['total']} "
          f"passages from {len(info['kinds'])} kinds of text in "
          f"{time.perf_counter() - start:.0f} s")
    print(format_table([(f"bm25 {s}", m) for s, m in info["bm25"].items()], METRICS,
                       first="run"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
