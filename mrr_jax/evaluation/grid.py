"""Plan grid: re-rank one split under several plans and put quality against cost.

Command line::

    python -m mrr_jax.grid --model DIR --data BEIR_DIR --split dev \\
        --first-stage BEIR_DIR/bm25/dev.trec --top-k 20 \\
        --plans "full;depth=20;compress=8:2" --out OUT [--max-queries N]

For each plan: the ``top_k`` first-stage candidates of every evaluated query (judged relevant
at least once; the first ``--max-queries`` in qid order) are re-ranked, the run is evaluated
with ``data.metrics.evaluate_run`` (``nDCG@10``, ``RR@10``, ``R@<top_k>``), and the cost
is recorded: predicted FLOPs per pair (``Plan.flops`` on each pair's real segment lengths,
averaged; also relative to the full model) and wall seconds of scoring. Compilation is kept out
of the seconds: every batch shape a plan will meet is compiled ahead (reported as
``compile_seconds``) before the timed pass. Pairs are tokenized once, outside every timing. The
first-stage run (cut to ``top_k``) is a baseline row with ``flops == 0``. With ``--out``,
``mrr_jax.evaluation.evaluate.grid_table`` writes ``grid.json``, ``grid.md`` and ``grid.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.core.plan import Plan
from mrr_jax.data import beir, trec
from mrr_jax.data.errors import DataError
from mrr_jax.data.fileio import PathLike
from mrr_jax.data.ids import check_ids
from mrr_jax.data.metrics import evaluate_per_query, evaluated_queries, format_table, mean_metrics
from mrr_jax.data.required import require_file, require_folder
from mrr_jax.data.units import units_from_run
from mrr_jax.evaluation.evaluate import grid_table
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import EncodedPair
from mrr_jax.weights.assets import model_path


def grid_metrics(top_k: int) -> list[str]:
    """The grid's metrics, as ir-measures names."""
    return ["nDCG@10", "RR@10", f"R@{top_k}"]


def mean_flops(rr, encoded: Sequence[EncodedPair], plan: Plan) -> float:
    """Predicted forward FLOPs of one pair under ``plan``, averaged over ``encoded``."""
    return math.fsum(plan.flops(rr.cfg, len(e.query), len(e.passage), len(e.prompt))
                     for e in encoded) / len(encoded)


def precompile(rr, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]],
               plan: Plan, exits: Sequence[int], batch_size: int) -> float:
    """Compiles, without running, the program of every batch shape in ``batches`` (the
    ``score_forward`` call of ``Reranker.score_encoded``, lowered ahead of time); returns the
    seconds spent."""
    import jax.numpy as jnp

    from mrr_jax.core.forward import score_forward

    start = time.perf_counter()
    seen: set[tuple[int, ...]] = set()
    for idx in batches:
        rows = [encoded[i] for i in idx]
        shape = batching.batch_shape(rows, batch_size)
        if shape in seen:
            continue
        seen.add(shape)
        arrays = batching.pack(rows, batching.batch_bucket(len(rows), batch_size))
        score_forward.lower(
            rr.params, rr.heads, **{k: jnp.asarray(v) for k, v in arrays.items()},
            adapters=rr.adapters_for(plan), cfg=rr.cfg, plan=plan,
            exits=tuple(sorted(set(exits))), start_layer=rr.start_layer,
            compat=rr.compat == "reference", dtype=rr.dtype, return_aux=False).compile()
    return time.perf_counter() - start


def score_plan(rr, encoded: Sequence[EncodedPair], batches: Sequence[Sequence[int]],
               plan: Plan, batch_size: int, on_batch: Callable[[int], None],
               exits: Sequence[int] | None = None) -> np.ndarray:
    """Scores [len(exits), n] float32 of every pair under resolved ``plan`` at ``exits``
    (default: its depth), scored in ``batches``; ``on_batch(rows)`` after each."""
    exits = list(exits or [plan.depth])
    out = np.zeros((len(exits), len(encoded)), np.float32)
    for idx in batches:
        out[:, idx] = rr.score_encoded([encoded[i] for i in idx], plan=plan, exits=exits,
                                       batch_size=batch_size)
        on_batch(len(idx))
    return out


def shared_passes(plans: Sequence[Plan]) -> list[list[int]]:
    """Indices of resolved ``plans`` grouped by what they run before their exit: the same
    compression schedule and mode. A group is one pass of its deepest plan with an exit at
    every member's depth (a shallower member's exit is a prefix of it: the same numbers as
    running it alone, in the default mode)."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault((plan.compress, plan.mode), []).append(i)
    return list(groups.values())


@dataclasses.dataclass
class GridPairs:
    """The grid's evaluated queries, their qrels, the first-stage run cut to ``top_k``, and the
    tokenized (query, candidate) pairs with their ``(qid, docid)`` keys and batches."""

    qids: list[str]
    judged: dict[str, dict[str, int]]
    first: dict[str, dict[str, float]]
    keys: list[tuple[str, str]]
    encoded: list[EncodedPair]
    batches: list[list[int]]

    @property
    def truncated(self) -> int:
        return sum(e.truncated for e in self.encoded)


def grid_pairs(rr, data_dir: PathLike, split: str, first_stage: PathLike, top_k: int,
               max_queries: int | None, *, batch_size: int, tokens_per_batch: int | None,
               max_length: int, query_max_length: int | None) -> GridPairs:
    """Reads the split and the first-stage run; tokenizes and batches the pairs, once."""
    corpus, queries, qrels = beir.load_split(data_dir, split)
    qids = sorted(evaluated_queries(qrels), key=trec.qid_key)[:max_queries]
    if not qids:
        raise DataError(f"split {split!r} has no query with a relevant document",
                        path=Path(data_dir) / "qrels" / f"{split}.tsv")
    wanted = set(qids)
    run = check_ids(first_stage, corpus).run
    first = trec.top_k({q: d for q, d in run.items() if q in wanted}, top_k)
    unknown = [q for q in first if q not in queries]
    if unknown:
        raise DataError(f"query {unknown[0]!r} of the run is not in queries.jsonl",
                        path=first_stage, field="qid")
    units = units_from_run(first, queries, corpus, top_k)
    pairs = [(u.query, p) for u in units for p in u.passages]
    if not pairs:
        raise DataError("the first-stage run has no candidates for the chosen queries",
                        path=first_stage)
    encoded = rr.encode(pairs, max_length, query_max_length)
    return GridPairs(qids, {q: qrels[q] for q in qids}, first,
                     [(u.qid, d) for u in units for d in u.docids], encoded,
                     batching.plan_batches(encoded, batch_size, tokens_per_batch))


def plan_grid(rr, data_dir: PathLike, split: str, first_stage: PathLike,
              plans: Sequence[str | Plan], top_k: int = 20, max_queries: int | None = None,
              out: PathLike | None = None, *, batch_size: int = 16,
              tokens_per_batch: int | None = None, max_length: int = 512,
              query_max_length: int | None = None, baseline_name: str | None = None,
              progress: bool = False, share_passes: bool = False,
              cascades: Sequence[str] = (), budget: str | None = None
              ) -> list[dict[str, Any]]:
    """Re-ranks ``split`` of the BEIR folder ``data_dir`` under each plan; returns grid rows.

    Rows (in ``plans`` order, then the baseline): ``plan`` (as given), ``plan_resolved``,
    ``metrics`` ({name: mean}), ``per_query`` ({qid: {name: value}}, for paired
    comparisons: ``data.metrics.paired_bootstrap``), ``flops`` (mean predicted FLOPs per
    pair), ``flops_rel`` (relative to the full model on the same pairs), ``seconds``
    (scoring, compile excluded),
    ``compile_seconds``, ``pairs``, ``pairs_per_second``, ``queries``, ``truncated``. The
    baseline row is the first-stage run cut to ``top_k``, with ``flops == 0``. With
    ``share_passes``, plans of one compression schedule are scored in one pass
    (:func:`shared_passes`); their rows then carry the pass's ``seconds`` and ``shared_pass``
    (the plans in it). With ``out``,
    ``grid.json``, ``grid.md`` and ``grid.png`` are written there.

    ``cascades`` (texts like ``"depth=12@100 > full@20"``) add one row each after the plans
    (``evaluation.cascade_grid.cascade_row``: ``kind == "cascade"``, FLOPs per candidate
    pair counting what each stage ran, a resumed prefix once). With ``out``, also
    ``frontier.md`` (``evaluation.frontier.frontier_table``, the choice under ``budget``)."""
    g = grid_pairs(rr, data_dir, split, first_stage, top_k, max_queries, batch_size=batch_size,
                   tokens_per_batch=tokens_per_batch, max_length=max_length,
                   query_max_length=query_max_length)
    metrics = grid_metrics(top_k)
    with_candidates = len({q for q, _ in g.keys})
    _log(f"grid: {len(g.qids)} queries ({with_candidates} with candidates), {len(g.encoded)} "
         f"pairs, {len(g.batches)} batches, {g.truncated} truncated", progress)
    if share_passes:
        rows = shared_rows(rr, g, plans, metrics, batch_size, progress)
    else:
        rows = [plan_row(rr, g, given, metrics, batch_size, progress) for given in plans]
    if cascades:
        from mrr_jax.evaluation.cascade_grid import cascade_row

        rows += [cascade_row(rr, g, text, metrics, batch_size, progress) for text in cascades]
    per_query = evaluate_per_query(g.first, g.judged, metrics)
    rows.append({"plan": baseline_name or _baseline_name(first_stage),
                 "metrics": mean_metrics(per_query, metrics), "per_query": per_query,
                 "flops": 0.0,
                 "flops_rel": 0.0, "seconds": 0.0, "baseline": True, "queries": len(g.qids),
                 "pairs": len(g.encoded)})
    if out is not None:
        from mrr_jax.evaluation.frontier import frontier_table

        grid_table(rows, out)
        (Path(out) / "frontier.md").write_text(frontier_table(rows, budget))
    return rows


def plan_row(rr, g: GridPairs, given: str | Plan, metrics: Sequence[str], batch_size: int,
             progress: bool) -> dict[str, Any]:
    """One plan's grid row: compiled ahead, then timed over every pair and evaluated."""
    plan = rr.resolve_plan(given)
    compile_s = precompile(rr, g.encoded, g.batches, plan, (plan.depth,), batch_size)
    with _bar(len(g.encoded), str(given), progress) as bar:
        t0 = time.perf_counter()
        scores = score_plan(rr, g.encoded, g.batches, plan, batch_size, bar.update)[0]
        seconds = time.perf_counter() - t0
    return _row(rr, g, given, plan, scores, metrics, seconds, compile_s, progress)


def shared_rows(rr, g: GridPairs, plans: Sequence[str | Plan], metrics: Sequence[str],
                batch_size: int, progress: bool) -> list[dict[str, Any]]:
    """The rows of ``plans`` (in order), each group of :func:`shared_passes` scored in one pass
    of its deepest plan."""
    resolved = [rr.resolve_plan(x) for x in plans]
    rows: list[dict[str, Any] | None] = [None] * len(plans)
    for group in shared_passes(resolved):
        deepest = max((resolved[i] for i in group), key=lambda p: p.depth)
        exits = sorted({resolved[i].depth for i in group})
        compile_s = precompile(rr, g.encoded, g.batches, deepest, exits, batch_size)
        names = [str(plans[i]) for i in group]
        with _bar(len(g.encoded), " + ".join(names), progress) as bar:
            t0 = time.perf_counter()
            scores = score_plan(rr, g.encoded, g.batches, deepest, batch_size, bar.update,
                                exits)
            seconds = time.perf_counter() - t0
        for i in group:
            rows[i] = _row(rr, g, plans[i], resolved[i], scores[exits.index(resolved[i].depth)],
                           metrics, seconds, compile_s, progress)
            rows[i]["shared_pass"] = names
    return rows


def _row(rr, g: GridPairs, given: str | Plan, plan: Plan, scores: np.ndarray,
         metrics: Sequence[str], seconds: float, compile_s: float, progress: bool
         ) -> dict[str, Any]:
    reranked: dict[str, dict[str, float]] = {}
    for (qid, docid), s in zip(g.keys, scores):
        reranked.setdefault(qid, {})[docid] = float(s)
    flops = mean_flops(rr, g.encoded, plan)
    full_flops = mean_flops(rr, g.encoded, Plan().resolve(rr.cfg.num_layers))
    pairs = len(g.encoded)
    per_query = evaluate_per_query(reranked, g.judged, metrics)
    row = {
        "plan": str(given), "plan_resolved": str(plan),
        "metrics": mean_metrics(per_query, metrics), "per_query": per_query,
        "flops": flops, "flops_rel": flops / full_flops, "seconds": seconds,
        "compile_seconds": compile_s, "pairs": pairs,
        "pairs_per_second": pairs / seconds if seconds > 0 else None,
        "queries": len(g.qids), "truncated": g.truncated,
        "score_stats": {"mean": float(np.mean(scores)), "std": float(np.std(scores))}}
    _log(f"grid: {given}: {row['metrics']} in {seconds:.1f} s (+{compile_s:.1f} s compile)",
         progress)
    return row


def _baseline_name(first_stage: PathLike) -> str:
    return "BM25" if "bm25" in str(first_stage).lower() else "first stage"


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        print(msg, file=sys.stderr)


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="pair", desc=desc, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr)


def format_grid(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of grid rows: metrics, GFLOPs/pair, relative FLOPs, seconds, pairs/s."""
    names = list(rows[0]["metrics"])
    table = [(r["plan"] + (" (baseline)" if r.get("baseline") else ""), {
        **r["metrics"], "GFLOPs/pair": r["flops"] / 1e9, "rel FLOPs": r["flops_rel"],
        "seconds": r["seconds"], "pairs/s": r.get("pairs_per_second")}) for r in rows]
    cols = [*names, "GFLOPs/pair", "rel FLOPs", "seconds", "pairs/s"]
    return format_table([(n, {k: v for k, v in vals.items() if v is not None})
                         for n, vals in table], cols, first="plan")


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrr_jax.grid",
        description="Plan grid: re-rank a split's first-stage candidates under each plan; "
                    "nDCG@10, RR@10, R@k against predicted FLOPs and wall time; writes "
                    "grid.json, grid.md and grid.png.")
    p.add_argument("--model", required=True, help="HF model directory, .gguf, or 'smollm2'")
    p.add_argument("--data", required=True, type=Path, help="BEIR folder (corpus.jsonl, "
                   "queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--split", default="dev", help="qrels split (default %(default)s)")
    p.add_argument("--first-stage", required=True, type=Path, help="first-stage TREC run")
    p.add_argument("--top-k", type=int, default=20, help="candidates per query "
                   "(default %(default)s)")
    p.add_argument("--plans", default="full", help='";"-separated plans, e.g. '
                   '"full;depth=20;compress=8:2" ("full" or "" = the whole model; default '
                   '%(default)s)')
    p.add_argument("--out", type=Path, help="folder for grid.json, grid.md, grid.png")
    p.add_argument("--max-queries", type=int, help="only the first N evaluated queries "
                   "(qid order)")
    p.add_argument("--batch-size", type=int, default=16, help="default %(default)s")
    p.add_argument("--tokens-per-batch", type=int, help="token budget per batch")
    p.add_argument("--max-length", type=int, default=512, help="default %(default)s")
    p.add_argument("--query-max-length", type=int)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--compat", choices=("default", "reference"), default="default")
    p.add_argument("--adapters", nargs="+", default=[], help="adapter folders from training "
                   "(applied per plan: stage1/vertical always, horizontal for its ratio)")
    p.add_argument("--baseline-name", help="name of the first-stage row (default BM25 when "
                   "the file name says bm25)")
    p.add_argument("--share-passes", action="store_true", help="score plans with the same "
                   "compression schedule in one pass (exits at each depth); their seconds "
                   "are then the shared pass's")
    p.add_argument("--cascades", default="", help='";"-separated cascades scored beside the '
                   'plans, e.g. "depth=12@100 > full@20;depth=8@100 > depth=20@30 > full@10"')
    p.add_argument("--budget", help="print the quality/cost frontier and the best plan or "
                   "cascade within this budget: relative FLOPs (0.5) or ms per query on this "
                   "machine (40ms)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def split_plans(text: str) -> list[str]:
    """A ``;``-separated list of plan texts, each read later by :meth:`Plan.parse` (``full``
    and the empty text are the full model): items are stripped and empty ones between
    separators dropped, but a text that is blank as a whole is one plan, the full model."""
    plans = [t.strip() for t in text.split(";") if t.strip()]
    return plans or [text.strip()]


def check_inputs(data: Path, split: str, first_stage: Path) -> None:
    """The files the grid reads exist (``FileNotFoundError`` naming the flag, and how the
    example dataset is built when that is what is missing)."""
    require_folder(data, "--data", example=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        require_file(data / name, "--data")
    require_file(data / "qrels" / f"{split}.tsv", f"--split {split}")
    require_file(first_stage, "--first-stage")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = _parser().parse_args(argv)
    plans = split_plans(args.plans)
    cascades = [t.strip() for t in args.cascades.split(";") if t.strip()]
    try:
        from mrr_jax.core.cascade import Cascade
        from mrr_jax.evaluation.frontier import Budget, frontier_table

        for text in plans:
            Plan.parse(text)
        for text in cascades:
            Cascade.parse(text)
        if args.budget is not None:
            Budget.parse(args.budget)
        if args.top_k < 1 or (args.max_queries is not None and args.max_queries < 1):
            raise ValueError("--top-k and --max-queries must be >= 1")
        check_inputs(args.data, args.split, args.first_stage)
        from mrr_jax.inference.reranker import Reranker

        rr = Reranker.from_pretrained(model_path(args.model), dtype=args.dtype,
                                      compat=args.compat, adapters=args.adapters)
        for text in plans:
            rr.resolve_plan(text)  # every plan fits the model before any scoring
        for text in cascades:
            rr.resolve_cascade(text)
        rows = plan_grid(rr, args.data, args.split, args.first_stage, plans, args.top_k,
                         args.max_queries, args.out, batch_size=args.batch_size,
                         tokens_per_batch=args.tokens_per_batch, max_length=args.max_length,
                         query_max_length=args.query_max_length,
                         baseline_name=args.baseline_name, progress=args.progress,
                         share_passes=args.share_passes, cascades=cascades,
                         budget=args.budget)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_grid(rows))
    if cascades or args.budget:
        print(frontier_table(rows, args.budget))
    if args.out:
        print(f"wrote {args.out / 'grid.json'}, grid.md, grid.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
