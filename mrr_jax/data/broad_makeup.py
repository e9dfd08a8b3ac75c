"""The make-up of the broad training set (:mod:`mrr_jax.data.broad`): ``makeup.json`` (every
count, the sources read with their versions and digests) and ``makeup.md`` (its tables)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.data.broad_pairs import Pair
from mrr_jax.data.broad_sources import KINDS
from mrr_jax.data.example import _mean, _words
from mrr_jax.data.fileio import atomic_write

QUERY_KINDS = ("summary", "heading", "first_sentence")


def makeup(pairs: Sequence[Pair], split_by_qid: Mapping[str, str], *, read: dict[str, Any],
           dropped: dict[str, int], held_out: dict[str, Any], params: dict[str, Any],
           bm25: dict[str, Any], rows: dict[str, int], candidates: int) -> dict[str, Any]:
    """Counts per split, source kind and query kind; lengths; packages per kind; sources."""
    queries: dict[str, Any] = {}
    for split in ("train", "dev"):
        mine = [p for p in pairs if split_by_qid[f"q:{p.docid}"] == split]
        table = Counter((p.kind, p.qkind) for p in mine)
        queries[split] = {
            "total": len(mine),
            "by_kind": {k: n for k in KINDS if (n := sum(table[k, q] for q in QUERY_KINDS))},
            "by_query_kind": {q: n for q in QUERY_KINDS
                              if (n := sum(table[k, q] for k in KINDS))},
            "by_kind_and_query_kind": {k: {q: table[k, q] for q in QUERY_KINDS
                                           if table[k, q]} for k in KINDS
                                       if any(table[k, q] for q in QUERY_KINDS)},
        }
    kinds = [k for k in KINDS if any(p.kind == k for p in pairs)]
    packages = {k: Counter(p.package for p in pairs if p.kind == k) for k in kinds}
    return {
        "kinds": kinds,
        "queries": queries,
        "passages": {"total": len(pairs),
                     "by_kind": {k: sum(packages[k].values()) for k in kinds}},
        "avg_words": {k: {"query": _mean([_words(p.query) for p in pairs if p.kind == k]),
                          "passage": _mean([_words(p.passage) for p in pairs if p.kind == k])}
                      for k in kinds},
        "packages_per_kind": {k: dict(sorted(packages[k].items())) for k in kinds},
        "candidates": candidates,
        "dropped": dropped,
        "dropped_headings": read["dropped_headings"],
        "held_out": held_out,
        "flag_rows": rows,
        "bm25": bm25,
        "params": params,
        "documents": read["documents"],
        "version_mismatches": read["version_mismatches"],
        "sources": {"python": read["python"], "debian": read["debian"]},
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def markdown(info: dict[str, Any]) -> str:
    """``makeup.md``: queries per source kind and query kind, lengths, sources."""
    train, dev = info["queries"]["train"], info["queries"]["dev"]
    rows = []
    for k in info["kinds"]:
        by_q = train["by_kind_and_query_kind"].get(k, {})
        rows.append([k, *(by_q.get(q, 0) for q in QUERY_KINDS), train["by_kind"].get(k, 0),
                     dev["by_kind"].get(k, 0), info["passages"]["by_kind"][k],
                     len(info["packages_per_kind"][k]), info["avg_words"][k]["query"],
                     info["avg_words"][k]["passage"]])
    rows.append(["**all**", *(train["by_query_kind"].get(q, 0) for q in QUERY_KINDS),
                 train["total"], dev["total"], info["passages"]["total"],
                 "", "", ""])
    out = ["# Make-up of the broad training set", "",
           *_table(["source kind", *(f"train: {q}" for q in QUERY_KINDS), "train queries",
                    "dev queries", "passages", "packages", "query words", "passage words"],
                   rows), "",
           f"Candidates {info['candidates']}; dropped: "
           + ", ".join(f"{k} {v}" for k, v in info["dropped"].items()) + ".", "",
           "BM25 (" + ", ".join(f"{s}: " + ", ".join(f"{m} {v}" for m, v in ms.items())
                                for s, ms in info["bm25"].items()) + ").", "",
           "## Sources", ""]
    for side in ("python", "debian"):
        out += _table([f"{side} package", "version", "files read"],
                      [[n, r["installed"], r["files"]] for n, r in
                       info["sources"][side].items()]) + [""]
    return "\n".join(out)


def write_makeup(out: Path, info: dict[str, Any]) -> None:
    """Write ``makeup.json`` and ``makeup.md`` into ``out``."""
    with atomic_write(out / "makeup.json") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    with atomic_write(out / "makeup.md") as f:
        f.write(markdown(info) + "\n")
