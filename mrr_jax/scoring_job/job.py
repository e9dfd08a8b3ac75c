"""The offline scoring job: re-rank the top-k candidates of a first-stage run under one or more
plans, sharded over processes or hosts, resumable, writing TREC runs.

Command line (``python -m mrr_jax.score --help`` for every flag)::

    python -m mrr_jax.score --model DIR|FILE.gguf|smollm2 [--adapters DIR [DIR ...]] \\
        --corpus corpus.jsonl --queries queries.jsonl --run first_stage.trec \\
        [--candidates cands.jsonl] --top-k 100 --plan "depth=20 compress=8:2" [--plan ...] \\
        --out OUT [--shard i/n] [--resume] [--merge-only] [--config job.json]

``--adapters``: folders written by training (``<workdir>/adapters/<role>``) or PEFT LoRA
folders, applied per plan by role (stage-1 and vertical to every plan, horizontal H(r) to plans
compressing with ratio r; see :meth:`mrr_jax.Reranker.adapters_for`). Their contents are part of
the job's configuration hash, so ``--resume`` with other adapters is refused.

How the work is cut, and why the output does not depend on it:

- A *unit* is one query and its top-k candidates (``mrr_jax.data.trec.ranking`` order). Units
  are sorted by qid (:func:`mrr_jax.data.trec.qid_key`) and grouped, in that order, into
  global *chunks* of about ``--chunk-pairs`` pairs (a query is never split). Shard ``i`` of
  ``n`` takes the contiguous chunk range ``[i*C//n, (i+1)*C//n)``. Batches are formed inside a
  chunk only (length-sorted, at most ``--batch-size`` rows and, with ``--tokens-per-batch``,
  ``rows * padded length <= budget``), so every pair meets the same batch whatever ``n`` is and
  the merged run is byte-identical for any number of shards.
- After each chunk, its scores go to ``OUT/shards/<i>-of-<n>/chunk-<k>.trec`` (tag column
  ``p<j>``: the j-th plan) through a temporary file and ``os.replace``; then the shard's
  ``manifest.json`` -- the commit point -- is rewritten the same way, listing the finished
  chunks, their qids, and the hash of the job's configuration. A kill at any moment leaves at
  worst an unlisted chunk file, which ``--resume`` scores again and overwrites: nothing is lost
  or counted twice. ``--resume`` refuses a manifest whose configuration hash differs.
- Several plans run as few passes as possible: a plan whose schedule equals a deeper plan's
  schedule below its own depth is read off that plan's pass as an extra exit (so ``depth=12``,
  ``depth=20`` and ``full`` cost one full pass); other schedules get passes of their own.
- When the last shard finishes (or with ``--merge-only``), the chunks are merged into
  ``OUT/run.trec`` (the first plan) and, with several plans, ``OUT/run.<plan>.trec`` for each,
  plus ``OUT/summary.json``.

Multi-host: with ``--distributed`` (or ``MRR_JAX_DISTRIBUTED=1``) ``jax.distributed.initialize``
is called (coordinator, process count and id from ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when set); whenever ``jax.process_count() > 1`` and
no ``--shard`` is given, the shard is ``process_index/process_count``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.data import beir, candidates, trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import atomic_write
from mrr_jax.data.ids import check_ids
from mrr_jax.data.records import Doc, Run
from mrr_jax.inputs.batching import plan_batches
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.runtime.pyconfig import load_config

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SMOLLM2 = "smollm2"


class JobError(Exception):
    """A job-level problem (output folder, resume, merge): reported without a traceback."""


# ----------------------------------------------------------------------------- plans


def parse_plan(text: str) -> Plan:
    """``full`` (or empty) is the full model; anything else is :meth:`Plan.parse` text."""
    text = text.strip()
    return Plan() if text in ("", "full") else Plan.parse(text)


def plan_filename(plan: Plan | str) -> str:
    """A file-name-safe form of a plan: ``depth=20 compress=8:2,16:2 mode=merge`` ->
    ``depth-20_compress-8x2-16x2_mode-merge`` (distinct plans give distinct names)."""
    return str(plan).replace(":", "x").replace(",", "-").replace("=", "-").replace(" ", "_")


@dataclasses.dataclass(frozen=True)
class Pass:
    """One forward pass: the deepest ``plan`` of a group and the plans it serves.

    ``targets``: ``(plan index, exit layer)`` for every plan read off this pass."""

    plan: Plan
    targets: tuple[tuple[int, int], ...]

    @property
    def exits(self) -> tuple[int, ...]:
        """The exit layers to score, sorted, without repeats."""
        return tuple(sorted({k for _, k in self.targets}))


def _serves(deep: Plan, plan: Plan) -> bool:
    """True when ``plan`` (resolved) equals ``deep`` (resolved) cut at ``plan.depth``."""
    if plan.depth > deep.depth:
        return False
    below = tuple((layer, r) for layer, r in deep.compress if layer < plan.depth)
    return below == plan.compress and (not below or deep.mode == plan.mode)


def group_plans(plans: Sequence[Plan]) -> list[Pass]:
    """Passes covering resolved ``plans``: deepest first, each later plan joining the first pass
    that serves it (see :func:`_serves`). Plans must be resolved (depth filled in)."""
    passes: list[tuple[Plan, list[tuple[int, int]]]] = []
    for j in sorted(range(len(plans)), key=lambda j: (-plans[j].depth, j)):
        plan = plans[j]
        for deep, targets in passes:
            if _serves(deep, plan):
                targets.append((j, plan.depth))
                break
        else:
            passes.append((plan, [(j, plan.depth)]))
    return [Pass(deep, tuple(targets)) for deep, targets in passes]


# ----------------------------------------------------------------------------- work units


@dataclasses.dataclass(frozen=True)
class Unit:
    """One query and its candidates, best first stage first."""

    qid: str
    query: str
    docids: tuple[str, ...]
    passages: tuple[str, ...]


def units_from_run(run: Mapping[str, Mapping[str, float]], queries: Mapping[str, str],
                   corpus: Mapping[str, Doc | str], top_k: int) -> list[Unit]:
    """Units of a checked run (every id known): per query its ``top_k`` best documents, queries
    in :func:`~mrr_jax.data.trec.qid_key` order. ``corpus`` values are ``Doc`` (its
    ``passage`` is read) or passage strings."""
    units = []
    for qid in sorted(run, key=trec.qid_key):
        ranked = trec.ranking(run[qid])[:top_k]
        if not ranked:
            continue
        docids = tuple(d for d, _ in ranked)
        units.append(Unit(qid, queries[qid], docids, tuple(_passage(corpus[d]) for d in docids)))
    return units


def _passage(doc: Doc | str) -> str:
    return doc.passage if isinstance(doc, Doc) else doc


def chunk_units(units: Sequence[Unit], chunk_pairs: int) -> list[list[Unit]]:
    """Consecutive groups of units, each closed once it holds >= ``chunk_pairs`` pairs."""
    chunks: list[list[Unit]] = []
    cur: list[Unit] = []
    pairs = 0
    for u in units:
        cur.append(u)
        pairs += len(u.docids)
        if pairs >= chunk_pairs:
            chunks.append(cur)
            cur, pairs = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def shard_range(num_chunks: int, shard: int, num_shards: int) -> range:
    """The chunks of shard ``shard`` of ``num_shards``: a contiguous range."""
    return range(shard * num_chunks // num_shards, (shard + 1) * num_chunks // num_shards)


# ----------------------------------------------------------------------------- batching & scoring


def score_pass(rr, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]], p: Pass,
               batch_size: int, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Scores of every pair at every exit of pass ``p``: [len(p.exits), n] float32."""
    exits = list(p.exits)
    out = np.zeros((len(exits), len(encoded)), np.float32)
    for idx in batches:
        out[:, idx] = rr.score_encoded([encoded[i] for i in idx], plan=p.plan, exits=exits,
                                       batch_size=batch_size)
        if on_batch is not None:
            on_batch(len(idx))
    return out


@dataclasses.dataclass
class ChunkResult:
    """Scores of a group of units: ``runs[j]`` is plan j's ``{qid: {docid: score}}``."""

    runs: list[Run]
    pairs: int
    truncated: int


def score_units(rr, units: Sequence[Unit], plans: Sequence[Plan], *, batch_size: int = 32,
                max_length: int = 512, query_max_length: int | None = None,
                tokens_per_batch: int | None = None,
                on_batch: Callable[[int], None] | None = None) -> ChunkResult:
    """Scores every (query, candidate) pair of ``units`` under each resolved plan of ``plans``,
    in as few passes as :func:`group_plans` allows. ``on_batch(rows)`` is called per batch."""
    pairs = [(u.query, p) for u in units for p in u.passages]
    keys = [(u.qid, d) for u in units for d in u.docids]
    encoded = rr.encode(pairs, max_length, query_max_length) if pairs else []
    batches = plan_batches(encoded, batch_size, tokens_per_batch)
    runs: list[Run] = [{} for _ in plans]
    for p in group_plans(plans):
        scores = score_pass(rr, encoded, batches, p, batch_size, on_batch)
        for j, k in p.targets:
            row = scores[p.exits.index(k)]
            run = runs[j]
            for (qid, docid), s in zip(keys, row):
                run.setdefault(qid, {})[docid] = float(s)
    return ChunkResult(runs, len(pairs), sum(e.truncated for e in encoded))


def rerank(rr, queries: Mapping[str, str], corpus: Mapping[str, Doc | str],
           run: Mapping[str, Mapping[str, float]], plans: Sequence[Plan | str], top_k: int = 100,
           *, batch_size: int = 32, max_length: int = 512, query_max_length: int | None = None,
           tokens_per_batch: int | None = None, on_missing: str = "error",
           progress: bool = False) -> dict[str, Run]:
    """Re-ranks the ``top_k`` best documents of each query of ``run`` under each plan, in memory.

    ``corpus``: ``{docid: Doc | passage}``; unknown ids raise :class:`DataError`
    (``on_missing="warn"`` drops them). Returns ``{str(resolved plan): run}`` in the order of
    ``plans`` (a plan given twice appears once)."""
    resolved = _resolve_plans(plans, rr.cfg.num_layers)
    checked = check_ids(run, corpus, queries, on_missing=on_missing).run
    units = units_from_run(checked, queries, corpus, top_k)
    total = sum(len(u.docids) for u in units) * len(group_plans(resolved))
    with _progress(total, 0, progress, "rerank") as bar:
        result = score_units(rr, units, resolved, batch_size=batch_size, max_length=max_length,
                             query_max_length=query_max_length,
                             tokens_per_batch=tokens_per_batch, on_batch=bar.update)
    return {str(p): r for p, r in zip(resolved, result.runs)}


def _resolve_plans(plans: Sequence[Plan | str], num_layers: int) -> list[Plan]:
    out: list[Plan] = []
    for p in plans:
        plan = (parse_plan(p) if isinstance(p, str) else p).resolve(num_layers)
        if plan not in out:
            out.append(plan)
    if not out:
        raise ValueError("no plan given")
    return out


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pair", desc=desc, disable=not enabled,
                dynamic_ncols=True, smoothing=0.05, file=sys.stderr)


# ----------------------------------------------------------------------------- job config


@dataclasses.dataclass
class JobConfig:
    """Every setting of a scoring job (the command-line flags, ``--config`` JSON keys)."""

    out: str = ""
    model: str | None = None
    adapters: list[str] = dataclasses.field(default_factory=list)
    corpus: str | None = None
    queries: str | None = None
    run: str | None = None
    candidates: str | None = None
    top_k: int = 100
    plan: list[str] = dataclasses.field(default_factory=lambda: ["full"])
    shard: str | None = None
    resume: bool = False
    merge_only: bool = False
    batch_size: int = 32
    tokens_per_batch: int | None = None
    max_length: int = 512
    query_max_length: int | None = None
    dtype: str = "float32"
    compat: str = "default"
    chunk_pairs: int = 256
    max_queries: int | None = None
    on_missing: str = "error"
    tag: str = "mrr_jax"
    distributed: bool = False
    progress: bool = True
    throttle: float = 0.0  # seconds to sleep after each chunk (testing kills mid-job)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> JobConfig:
        """From flag-named keys (``top_k`` or ``top-k``; ``plans`` is an alias of ``plan``;
        ``plan`` and ``adapters`` also take a single string)."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            name = "plan" if name == "plans" else name
            if name not in names:
                raise JobError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(names))})")
            if name in ("plan", "adapters") and isinstance(value, str):
                value = [value]
            if name == "adapters" and isinstance(value, tuple):  # Python configs
                value = list(value)
            clean[name] = _typed(name, value, source)
        return cls(**clean)

    def validate(self) -> None:
        """Raise :class:`JobError` on missing or contradictory settings."""
        if not self.out:
            raise JobError("--out is required")
        if self.merge_only:
            return
        if not self.model:
            raise JobError("--model is required (an HF directory, a .gguf file, or 'smollm2')")
        if self.candidates:
            if self.run or self.queries:
                raise JobError("--candidates replaces --run and --queries; give one or the other")
        elif not (self.corpus and self.queries and self.run):
            raise JobError("give --corpus, --queries and --run (or --candidates)")
        for name in ("top_k", "batch_size", "max_length", "chunk_pairs"):
            if int(getattr(self, name)) < 1:
                raise JobError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("tokens_per_batch", "query_max_length", "max_queries"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise JobError(f"--{name.replace('_', '-')} must be >= 1")
        if self.on_missing not in ("error", "warn"):
            raise JobError(f"--on-missing must be 'error' or 'warn', got {self.on_missing!r}")
        if not self.plan:
            raise JobError("no --plan given")
        for a in self.adapters:
            if not Path(a).is_dir():
                raise JobError(f"--adapters {a}: no such adapter folder")

    def hashed(self, plans: Sequence[Plan], model: Path) -> dict[str, Any]:
        """What the results depend on (``model``: the resolved model path; inputs and adapters
        fingerprinted): two runs of the same job share it; the shard, --resume, --out and
        display options are left out. ``adapters`` appears only when some are given, so jobs
        without adapters keep the hash they had before the key existed."""
        return {
            "version": FORMAT_VERSION,
            "model": _fingerprint(str(model)),
            **({"adapters": [_fingerprint(a) for a in self.adapters]} if self.adapters else {}),
            "inputs": {name: _fingerprint(getattr(self, name))
                       for name in ("corpus", "queries", "run", "candidates")
                       if getattr(self, name)},
            "plans": [str(p) for p in plans],
            **{name: getattr(self, name) for name in (
                "top_k", "batch_size", "tokens_per_batch", "max_length", "query_max_length",
                "dtype", "compat", "chunk_pairs", "max_queries", "on_missing", "tag")},
        }


_INT_KEYS = ("top_k", "batch_size", "tokens_per_batch", "max_length", "query_max_length",
             "chunk_pairs", "max_queries")
_BOOL_KEYS = ("resume", "merge_only", "distributed", "progress")


def _typed(name: str, value: Any, source: str) -> Any:
    """A config-file value checked against its flag's type."""
    ok = True
    if name in _INT_KEYS:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif name in _BOOL_KEYS:
        ok = isinstance(value, bool)
    elif name == "throttle":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif name in ("plan", "adapters"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = value is None or isinstance(value, str)
    if not ok:
        raise JobError(f"{source}: {name} has the wrong type ({type(value).__name__}: "
                       f"{value!r})")
    return value


def config_hash(hashed: Mapping[str, Any]) -> str:
    """SHA-256 of a canonical JSON of the hashed configuration."""
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()


_HASH_LIMIT = 1 << 28


def _fingerprint(path: str) -> dict[str, Any]:
    """Identity of an input: absolute path, size and SHA-256 (size and mtime past 256 MiB); for a
    model directory, that of each file in it."""
    p = Path(path)
    if not p.exists():
        return {"path": str(path)}
    p = p.resolve()
    if p.is_dir():
        return {"path": str(p), "files": {f.name: _file_id(f) for f in sorted(p.iterdir())
                                          if f.is_file()}}
    return {"path": str(p), **_file_id(p)}


def _file_id(p: Path) -> dict[str, Any]:
    st = p.stat()
    if st.st_size > _HASH_LIMIT:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return {"size": st.st_size, "sha256": h.hexdigest()}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise JobError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(m.group(1)), int(m.group(2))


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Inputs:
    """The job's units and what reading them skipped."""

    units: list[Unit]
    skipped_entries: int = 0


def load_inputs(cfg: JobConfig) -> Inputs:
    """Read the run (or candidates), the queries and the corpus into units."""
    corpus = beir.load_corpus(cfg.corpus) if cfg.corpus else None
    if cfg.candidates:
        units, skipped = _candidate_units(cfg, corpus)
    else:
        queries = beir.load_queries(cfg.queries)
        checked = check_ids(cfg.run, corpus, queries, on_missing=cfg.on_missing)
        units = units_from_run(checked.run, queries, corpus, cfg.top_k)
        skipped = checked.skipped_entries
    if cfg.max_queries is not None:
        units = units[:cfg.max_queries]
    if not units:
        raise DataError("no query with candidates to score",
                        path=cfg.candidates or cfg.run)
    return Inputs(units, skipped)


def _candidate_units(cfg: JobConfig, corpus: Mapping[str, Doc] | None) -> tuple[list[Unit], int]:
    items = candidates.load_candidates(cfg.candidates)
    need = {c.qid: {x.docid: 0.0 for x in c.candidates if x.text is None}
            for c in items.values()}
    need = {q: d for q, d in need.items() if d}
    known: Mapping[str, Doc] = corpus or {}
    skipped = 0
    if need:
        if corpus is None:
            q = next(iter(need))
            raise DataError(f"candidate {next(iter(need[q]))!r} of query {q!r} has no text; "
                            "give --corpus to look candidates up", path=cfg.candidates,
                            field="text")
        skipped = check_ids(need, corpus, on_missing=cfg.on_missing).skipped_entries
    units = []
    for qid in sorted(items, key=trec.qid_key):
        item = items[qid]
        cands = [c for c in item.candidates if c.text is not None or c.docid in known]
        if all(c.score is not None for c in cands):  # first-stage order, else file order
            order = {d: i for i, (d, _) in enumerate(trec.ranking(
                {c.docid: c.score for c in cands}))}
            cands.sort(key=lambda c: order[c.docid])
        cands = cands[:cfg.top_k]
        if cands:
            units.append(Unit(qid, item.query, tuple(c.docid for c in cands), tuple(
                c.text if c.text is not None else known[c.docid].passage for c in cands)))
    return units, skipped


def load_model(cfg: JobConfig, path: Path | None = None):
    """The job's :class:`~mrr_jax.Reranker` (``smollm2`` = the cached SmolLM2 directory), with
    its ``adapters`` (applied per plan by role)."""
    from mrr_jax.inference.reranker import Reranker

    path = model_path(cfg.model) if path is None else path
    return Reranker.from_pretrained(path, dtype=cfg.dtype, compat=cfg.compat,
                                    adapters=list(cfg.adapters))


def model_path(model: str) -> Path:
    """``smollm2`` -> :func:`mrr_jax.weights.assets.smollm2_dir`; anything else is a path."""
    if model == SMOLLM2:
        from mrr_jax.weights.assets import smollm2_dir

        return smollm2_dir()
    path = Path(model)
    if not path.exists():
        raise JobError(f"--model {model}: no such directory or file")
    return path


# ----------------------------------------------------------------------------- shard state


def shard_dir(out: Path, shard: int, num_shards: int) -> Path:
    """``OUT/shards/<i>-of-<n>``."""
    return out / "shards" / f"{shard}-of-{num_shards}"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A shard's manifest, or None if it has none yet."""
    f = folder / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise JobError(f"{f}: corrupt manifest ({e.msg}); it is only ever replaced whole, so "
                       "something else wrote it") from None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Replace a shard's manifest atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_write(folder / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _shard_dirs(out: Path) -> dict[tuple[int, int], Path]:
    found = {}
    root = out / "shards"
    if root.is_dir():
        for d in root.iterdir():
            m = re.fullmatch(r"(\d+)-of-(\d+)", d.name)
            if m and d.is_dir():
                found[int(m.group(1)), int(m.group(2))] = d
    return found


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_out_dir(out: Path, shard: int, num_shards: int, chash: str, hashed: Mapping[str, Any],
                  resume: bool) -> dict[str, Any] | None:
    """Check that ``out`` may take this shard; return the shard's manifest when resuming.

    Without ``resume`` the folder must be empty or hold only sibling shards of this very job
    (same ``n``, same configuration hash). With it, the shard's manifest, if any, must carry the
    same configuration hash."""
    mine = shard_dir(out, shard, num_shards)
    for (i, n), d in sorted(_shard_dirs(out).items()):
        if n != num_shards:
            raise JobError(f"{out} holds shard {i}-of-{n} of a job cut into {n} shards, not "
                           f"{num_shards}; use another --out or the same shard count")
        m = read_manifest(d)
        if d != mine and m is not None and m["config_hash"] != chash:
            raise JobError(f"{out}: shard {i}-of-{n} belongs to another job (its configuration "
                           f"differs in: {', '.join(_diff(m['config'], hashed))}); "
                           "use another --out")
    manifest = read_manifest(mine)
    if resume:
        if manifest is not None and manifest["config_hash"] != chash:
            raise JobError(f"refusing to resume {mine}: the job's configuration changed since it "
                           f"started (differs in: {', '.join(_diff(manifest['config'], hashed))})."
                           " Rerun with the original settings, or use another --out")
        return manifest
    others = [p.name for p in out.iterdir()] if out.is_dir() else []
    foreign = [name for name in others if name != "shards"]
    if foreign or (mine.is_dir() and any(mine.iterdir())):
        what = ", ".join(sorted(foreign)) or str(mine.relative_to(out))
        raise JobError(f"{out} already exists and is not empty ({what}); pass --resume to "
                       "continue the job it holds, or choose another --out")
    return None


# ----------------------------------------------------------------------------- chunk files


def write_chunk(path: Path, units: Sequence[Unit], runs: Sequence[Run]) -> None:
    """A chunk's scores as TREC lines, tag ``p<j>`` for plan j, written atomically."""
    with atomic_write(path) as f:
        for j, run in enumerate(runs):
            for u in units:
                for rank, (docid, score) in enumerate(trec.ranking(run[u.qid]), start=1):
                    f.write(f"{u.qid} Q0 {docid} {rank} {score!r} p{j}\n")


def read_chunk(path: Path, num_plans: int) -> list[Run]:
    """Inverse of :func:`write_chunk`: ``runs[j]`` for each plan."""
    runs: list[Run] = [{} for _ in range(num_plans)]
    for r in _iter_chunk(path):
        m = re.fullmatch(r"p(\d+)", r[3])
        if not m or int(m.group(1)) >= num_plans:
            raise DataError(f"unexpected tag {r[3]!r}", path=path, field="tag")
        docs = runs[int(m.group(1))].setdefault(r[0], {})
        if r[1] in docs:
            raise DataError(f"({r[0]!r}, {r[1]!r}) scored twice", path=path, field="docid")
        docs[r[1]] = r[2]
    return runs


def _iter_chunk(path: Path) -> Iterator[tuple[str, str, float, str]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            cols = text.split()
            if len(cols) != 6:
                raise DataError("expected 6 columns", path=path, line=line, field="columns")
            yield cols[0], cols[2], float(cols[4]), cols[5]


# ----------------------------------------------------------------------------- the job


def run_job(config: JobConfig | Mapping[str, Any]) -> Path:
    """Runs (or resumes) this process's shard of a scoring job, and merges once all shards are
    done. Returns the merged run (``OUT/run.trec``) if it was written, else the shard folder.

    Raises :class:`DataError` for bad input and :class:`JobError` for job-level problems."""
    cfg = config if isinstance(config, JobConfig) else JobConfig.from_dict(config)
    cfg.validate()
    out = Path(cfg.out)
    if cfg.merge_only:
        return merge(out, parse_shard(cfg.shard)[1] if cfg.shard else None)
    maybe_init_distributed(cfg.distributed)
    shard, num_shards = pick_shard(cfg.shard)
    for text in cfg.plan:
        parse_plan(text)  # syntax errors before the slow parts
    if out.exists() and not out.is_dir():
        raise JobError(f"--out {out} is a file, not a folder")
    inputs = load_inputs(cfg)
    mpath = model_path(cfg.model)
    rr = load_model(cfg, mpath)
    plans = _resolve_plans(cfg.plan, rr.cfg.num_layers)
    hashed = cfg.hashed(plans, mpath)
    chash = config_hash(hashed)
    manifest = check_out_dir(out, shard, num_shards, chash, hashed, cfg.resume)

    chunks = chunk_units(inputs.units, cfg.chunk_pairs)
    mine = shard_range(len(chunks), shard, num_shards)
    folder = shard_dir(out, shard, num_shards)
    folder.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = {
            "config_hash": chash, "config": hashed, "shard": shard, "num_shards": num_shards,
            "num_chunks": len(chunks), "assigned": list(mine), "plans": [str(p) for p in plans],
            "plan_args": list(cfg.plan), "done": {}, "sessions": [], "complete": False,
            "pairs": sum(len(u.docids) for k in mine for u in chunks[k]),
            "queries": sum(len(chunks[k]) for k in mine),
            "skipped_entries": inputs.skipped_entries,
        }
    _check_done(manifest, chunks, folder)
    manifest["sessions"].append({"started_at": time.time(), "pid": os.getpid()})
    write_manifest(folder, manifest)

    passes = group_plans(plans)
    todo = [k for k in mine if str(k) not in manifest["done"]]
    done_pairs = manifest["pairs"] - sum(len(u.docids) for k in todo for u in chunks[k])
    label = f"shard {shard}/{num_shards}" if num_shards > 1 else "score"
    start = time.perf_counter()
    with _progress(manifest["pairs"] * len(passes), done_pairs * len(passes), cfg.progress,
                   label) as bar:
        for k in todo:
            t0 = time.perf_counter()
            result = score_units(rr, chunks[k], plans, batch_size=cfg.batch_size,
                                 max_length=cfg.max_length,
                                 query_max_length=cfg.query_max_length,
                                 tokens_per_batch=cfg.tokens_per_batch, on_batch=bar.update)
            name = f"chunk-{k:05d}.trec"
            write_chunk(folder / name, chunks[k], result.runs)
            manifest["done"][str(k)] = {
                "file": name, "qids": [u.qid for u in chunks[k]], "pairs": result.pairs,
                "truncated": result.truncated, "seconds": time.perf_counter() - t0,
                "finished_at": time.time()}
            write_manifest(folder, manifest)  # the commit point of this chunk
            if cfg.throttle:
                time.sleep(cfg.throttle)
    session_s = time.perf_counter() - start
    manifest["complete"] = True
    manifest["sessions"][-1].update(ended_at=time.time(), seconds=session_s)
    write_manifest(folder, manifest)
    _report_shard(manifest, len(todo), session_s, label)
    if all_complete(out, num_shards):
        return merge(out, num_shards)
    print(f"{label}: done; waiting for the other shards, then merge (whoever finishes last "
          f"merges, or: python -m mrr_jax.score --merge-only --out {out})", file=sys.stderr)
    return folder


def _check_done(manifest: Mapping[str, Any], chunks: Sequence[Sequence[Unit]],
                folder: Path) -> None:
    for k, info in manifest["done"].items():
        expect = [u.qid for u in chunks[int(k)]] if int(k) < len(chunks) else None
        if expect != info["qids"] or not (folder / info["file"]).is_file():
            raise JobError(f"{folder / MANIFEST}: finished chunk {k} does not match the job "
                           "(its queries or its file); the folder was altered, use another --out")


def _report_shard(manifest: Mapping[str, Any], scored: int, seconds: float, label: str) -> None:
    done = manifest["done"].values()
    truncated = sum(c["truncated"] for c in done)
    pairs = sum(c["pairs"] for c in done)
    if truncated:
        print(f"{label}: {truncated} of {pairs} pairs were truncated to "
              f"max_length (passage cut, prompt kept)", file=sys.stderr)
    if manifest.get("skipped_entries"):
        print(f"{label}: skipped {manifest['skipped_entries']} run entries with unknown ids",
              file=sys.stderr)
    print(f"{label}: {scored} chunk(s) scored this session in {seconds:.1f} s; shard holds "
          f"{manifest['queries']} queries, {manifest['pairs']} pairs", file=sys.stderr)


def maybe_init_distributed(flag: bool) -> None:
    """``jax.distributed.initialize`` under ``--distributed`` or ``MRR_JAX_DISTRIBUTED=1``."""
    if not (flag or os.environ.get("MRR_JAX_DISTRIBUTED") == "1"):
        return
    import jax

    kwargs: dict[str, Any] = {}
    if addr := os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = addr
    if n := os.environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(n)
    if i := os.environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(i)
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        if "already" not in str(e):  # a second job in the same process
            raise


def pick_shard(text: str | None) -> tuple[int, int]:
    """``--shard i/n`` if given, else ``jax.process_index()/jax.process_count()``."""
    if text:
        return parse_shard(text)
    import jax

    return jax.process_index(), jax.process_count()


# ----------------------------------------------------------------------------- merge


def all_complete(out: Path, num_shards: int) -> bool:
    """True when every shard of ``num_shards`` has a complete manifest."""
    ms = [read_manifest(shard_dir(out, i, num_shards)) for i in range(num_shards)]
    return all(m is not None and m.get("complete") for m in ms)


def merge(out: Path, num_shards: int | None = None) -> Path:
    """Merges complete shards into ``OUT/run.trec`` (+ one run per plan) and ``summary.json``.

    ``num_shards``: which shard count to merge (default: the one found under ``OUT/shards``).
    Every chunk of the job must be finished exactly once, else :class:`JobError`."""
    found = _shard_dirs(out)
    counts = sorted({n for _, n in found})
    if num_shards is None:
        if len(counts) != 1:
            raise JobError(f"{out}: no shards to merge" if not counts else
                           f"{out}: shards of several shard counts {counts}; say which with "
                           "--shard 0/N")
        num_shards = counts[0]
    manifests = []
    for i in range(num_shards):
        m = read_manifest(shard_dir(out, i, num_shards))
        if m is None or not m.get("complete"):
            have = 0 if m is None else len(m["done"])
            total = "?" if m is None else len(m["assigned"])
            raise JobError(f"{out}: shard {i}-of-{num_shards} is not finished ({have} of {total} "
                           "chunks done); run it (with --resume) before merging")
        manifests.append(m)
    if len({m["config_hash"] for m in manifests}) != 1:
        raise JobError(f"{out}: the shards were run with different configurations")
    first = manifests[0]
    assigned = sorted(k for m in manifests for k in m["assigned"])
    if assigned != list(range(first["num_chunks"])):
        raise JobError(f"{out}: the shards' chunks do not cover the job exactly once")
    plans = first["plans"]
    runs: list[Run] = [{} for _ in plans]
    for i, m in enumerate(manifests):
        folder = shard_dir(out, i, num_shards)
        for k in m["assigned"]:
            info = m["done"][str(k)]
            part = read_chunk(folder / info["file"], len(plans))
            for j, run in enumerate(part):
                if sorted(run) != sorted(info["qids"]):
                    raise JobError(f"{folder / info['file']}: its queries differ from the "
                                   "manifest's")
                for qid, docs in run.items():
                    if qid in runs[j]:
                        raise JobError(f"{out}: query {qid!r} was scored by two chunks")
                    runs[j][qid] = docs
    tag = first["config"]["tag"]
    names = {}
    for j, plan in enumerate(plans):
        targets = ["run.trec"] if j == 0 else []
        if len(plans) > 1:
            targets.append(f"run.{plan_filename(plan)}.trec")
        for name in targets:
            _write_run_atomic(out / name, runs[j], tag)
        names[plan] = targets
    _write_summary(out, manifests, names)
    print(f"merged {num_shards} shard(s): {sum(len(r) for r in runs[:1])} queries -> "
          + ", ".join(str(out / n[-1]) for n in names.values()), file=sys.stderr)
    return out / "run.trec"


def _write_run_atomic(path: Path, run: Run, tag: str) -> None:
    """``trec.write_run`` to a name private to this process, then ``os.replace``: two shards
    merging at the same moment cannot interleave."""
    private = path.with_name(f".{path.name}.{os.getpid()}")
    trec.write_run(private, run, tag=tag)
    os.replace(private, path)


def _write_summary(out: Path, manifests: Sequence[Mapping[str, Any]],
                   names: Mapping[str, list[str]]) -> None:
    chunks = [c for m in manifests for c in m["done"].values()]
    pairs = sum(c["pairs"] for c in chunks)
    seconds = math.fsum(c["seconds"] for c in chunks)
    starts = [s["started_at"] for m in manifests for s in m["sessions"]]
    wall = max(c["finished_at"] for c in chunks) - min(starts)
    first = manifests[0]
    summary = {
        "plans": [{"plan": p, "plan_arg": a, "files": names[p]}
                  for p, a in zip(first["plans"], first["plan_args"])],
        "passes": [{"plan": str(p.plan), "exits": list(p.exits)} for p in group_plans(
            [Plan.parse(s) for s in first["plans"]])],
        "queries": sum(m["queries"] for m in manifests),
        "pairs": pairs,
        "truncated": sum(c["truncated"] for c in chunks),
        "skipped_entries": first.get("skipped_entries", 0),
        "num_shards": len(manifests),
        "chunks": len(chunks),
        "scoring_seconds": seconds,
        "pairs_per_second": pairs / seconds if seconds else None,
        "wall_seconds": wall,
        "pairs_per_second_wall": pairs / wall if wall > 0 else None,
        "shards": [{"shard": m["shard"], "pairs": m["pairs"], "queries": m["queries"],
                    "scoring_seconds": math.fsum(c["seconds"] for c in m["done"].values()),
                    "sessions": len(m["sessions"])} for m in manifests],
        "config": first["config"],
    }
    path = out / "summary.json"
    private = path.with_name(f".summary.json.{os.getpid()}")
    with atomic_write(private) as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    os.replace(private, path)
    rate = summary["pairs_per_second"]
    print(f"summary: {summary['queries']} queries, {pairs} pairs, {summary['truncated']} "
          f"truncated, {seconds:.1f} s scoring ({rate or 0:.2f} pairs/s per worker), "
          f"{wall:.1f} s wall -> {path}", file=sys.stderr)


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.score", argument_default=argparse.SUPPRESS,
        description="Re-rank the top-k candidates of a first-stage run under one or more plans; "
                    "sharded, resumable; writes OUT/run.trec (TREC run).")
    src = p.add_argument_group("inputs")
    src.add_argument("--model", help="HF model directory, .gguf file, or 'smollm2' (the cached "
                     "SmolLM2-135M-Instruct)")
    src.add_argument("--corpus", help="BEIR corpus.jsonl (passage = title + ' ' + text)")
    src.add_argument("--queries", help="BEIR queries.jsonl")
    src.add_argument("--run", help="first-stage TREC run (qid Q0 docid rank score tag)")
    src.add_argument("--candidates", help="candidates JSONL instead of --run/--queries "
                     "(candidates without text are looked up in --corpus)")
    src.add_argument("--top-k", type=int, help="candidates re-ranked per query (default 100)")
    src.add_argument("--max-queries", type=int, help="only the first N queries (qid order)")
    src.add_argument("--on-missing", choices=("error", "warn"),
                     help="unknown ids in the run: error (default) or warn, skip and count")
    src.add_argument("--config", help="settings file: JSON, or a Python config FILE.py[:ARG] "
                     "with get_config(ARG) (keys as the flags, e.g. top_k, plan); flags given "
                     "here override it")
    m = p.add_argument_group("model and plans")
    m.add_argument("--adapters", nargs="+", action="extend", metavar="DIR",
                   help="adapter folders (training's <workdir>/adapters/<role>, or PEFT LoRA "
                   "folders) applied per plan by role; repeatable")
    m.add_argument("--plan", action="append", help='a plan, e.g. "depth=20 compress=8:2"; '
                   "repeat for several ('full' = the whole model, the default); the first "
                   "gives OUT/run.trec")
    m.add_argument("--dtype", choices=("float32", "bfloat16"), help="default float32")
    m.add_argument("--compat", choices=("default", "reference"), help="default 'default'")
    m.add_argument("--max-length", type=int, help="query+passage tokens (default 512)")
    m.add_argument("--query-max-length", type=int, help="query tokens (default 3/4 of "
                   "max-length)")
    m.add_argument("--batch-size", type=int, help="rows per batch at most (default 32)")
    m.add_argument("--tokens-per-batch", type=int, help="token budget: rows * padded length "
                   "<= this (length-sorted batches)")
    j = p.add_argument_group("job")
    j.add_argument("--out", help="output folder: run.trec, summary.json, shards/")
    j.add_argument("--shard", help="i/n: this process scores shard i of n (default: "
                   "jax.process_index()/process_count())")
    j.add_argument("--resume", action="store_true", help="continue the job in --out, skipping "
                   "finished chunks")
    j.add_argument("--merge-only", action="store_true", help="only merge finished shards")
    j.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize "
                   "(also MRR_JAX_DISTRIBUTED=1; JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                   "JAX_PROCESS_ID)")
    j.add_argument("--chunk-pairs", type=int, help="pairs per committed chunk (default 256)")
    j.add_argument("--tag", help="run tag column (default mrr_jax)")
    j.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    j.add_argument("--throttle", type=float, help=argparse.SUPPRESS)
    return p


def parse_config(argv: Sequence[str] | None = None) -> JobConfig:
    """Flags over ``--config`` (JSON or Python ``get_config``) over defaults."""
    args = vars(_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if "config" in args:
        path = args.pop("config")
        try:
            loaded = load_config(path)
        except OSError as e:
            raise JobError(f"--config {path}: {e.strerror or e}") from None
        values.update(loaded)
        source = str(path)
    else:
        source = "config"
    cfg = JobConfig.from_dict(values, source)
    return dataclasses.replace(cfg, **args)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input or job errors)."""
    try:
        cfg = parse_config(argv)
        out = run_job(cfg)
    except (DataError, JobError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
