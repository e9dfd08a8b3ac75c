"""``python -m mrr_jax.train_eval``: a finished training run against its starting weights, on
the dev set, plan by plan, with paired statistics.

    python -m mrr_jax.train_eval --config configs/smollm2_135m_long.py --workdir out/long \\
        [--config.eval.max_queries=1000] [--config.eval.plans="('full', 'compress=8:2')"]

The same ``--config`` (and overrides) the run was trained with; only ``eval.*`` may differ
(adapters from another config are refused). The dev groups are the trainer's (``data.dev``,
``eval.max_queries`` queries, ``eval.group_size`` candidates each: the positive and the first
negatives). Every plan of ``eval.plans`` is scored twice: with the starting weights (the base
with ``model.init_adapters`` folded in, where training starts) and with the run's final adapters
(``<workdir>/adapters/<role>``). Per plan: MRR@10 and dev loss (contrastive CE of the positive)
of both, the queries whose reciprocal rank went up / down, and a paired-bootstrap 95% interval
of the MRR@10 change (10,000 resamples of the queries, seed 0). Prints a table and writes
``<workdir>/train_eval.json`` (with the per-query values).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrr_jax.data.metrics import paired_bootstrap as paired


def trained_adapters(c, rr, workdir: Path):
    """The run's final adapters (``<workdir>/adapters/<role>`` for every role config ``c``
    trains) as PlanAdapters for ``rr``'s model, checked to come from config ``c``."""
    from mrr_jax.inference.adapters import PlanAdapter
    from mrr_jax.training.config import roles_of, training_fingerprint
    from mrr_jax.training.state import adapter_folder
    from mrr_jax.weights.adapters import AdapterRole, read_adapter

    digest = training_fingerprint(c.to_dict())
    out = []
    for role in roles_of(c):
        path = adapter_folder(workdir, role)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such adapter (has the run finished?)")
        _, meta = read_adapter(path)
        if meta.get("config_hash") != digest:
            raise ValueError(f"{path}: trained with another config (hash "
                             f"{meta.get('config_hash')}, this one {digest})")
        if AdapterRole.from_meta(meta) != role:
            raise ValueError(f"{path}: holds a {AdapterRole.from_meta(meta)} adapter, "
                             f"expected {role}")
        out.append(PlanAdapter.load(path, rr.cfg, rr.start_layer))
    return tuple(out)


def compare(c, workdir: str | Path) -> dict[str, Any]:
    """Starting weights vs the run's final adapters on the dev groups, per ``eval.plans``."""
    from mrr_jax.training.config import check_config
    from mrr_jax.training.data import dev_set
    from mrr_jax.training.dev_eval import dev_metrics, eval_batch_queries, eval_plan, plan_scores
    from mrr_jax.training.loop import load_model

    check_config(c)
    host = load_model(c)
    trained = trained_adapters(c, host, Path(workdir))
    rr = host.place()
    models = {"start": rr, "trained": rr.with_adapters(trained)}
    dev = dev_set(c, rr)
    plans: dict[str, Any] = {}
    t0 = time.perf_counter()
    for text in c.eval.plans:
        plan = eval_plan(text, rr.cfg.num_layers)
        m = {name: dev_metrics(dev, plan_scores(model, dev, plan, eval_batch_queries(c)))
             for name, model in models.items()}
        plans[text] = {
            **{name: {"mrr@10": float(v["rr"].mean()), "loss": float(v["loss"].mean())}
               for name, v in m.items()},
            "mrr@10": paired(m["start"]["rr"], m["trained"]["rr"]),
            "loss": paired(m["start"]["loss"], m["trained"]["loss"]),
            "per_query": {k: {"rr": v["rr"].round(6).tolist(),
                              "loss": v["loss"].round(6).tolist()} for k, v in m.items()},
        }
    g = dev.batch.group_size
    return {"dev": c.data.dev, "queries": len(dev.qids), "group_size": g,
            "random_mrr@10": float(np.sum(1.0 / np.arange(1, min(g, 10) + 1)) / g),
            "uniform_loss": float(np.log(g)), "qids": dev.qids, "plans": plans,
            "seconds": round(time.perf_counter() - t0, 1)}


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per plan."""
    lines = [f"dev: {result['queries']} queries x {result['group_size']} candidates (random "
             f"order: MRR@10 {result['random_mrr@10']:.3f}, loss ln G = "
             f"{result['uniform_loss']:.3f})", "",
             "| plan | dev loss start → trained | MRR@10 start → trained | MRR@10 change "
             "[95% CI] | queries up / down |", "|---|---:|---:|---:|---:|"]
    for text, p in result["plans"].items():
        ch = p["mrr@10"]
        lines.append(f"| `{text}` | {p['start']['loss']:.3f} → {p['trained']['loss']:.3f} | "
                     f"{p['start']['mrr@10']:.3f} → {p['trained']['mrr@10']:.3f} | "
                     f"{ch['change']:+.3f} [{ch['ci95'][0]:+.3f}, {ch['ci95'][1]:+.3f}] | "
                     f"{ch['up']} / {ch['down']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from mrr_jax.data.errors import DataError
    from mrr_jax.data.fileio import atomic_write_bytes
    from mrr_jax.training.cli import config_parser, parse

    try:
        c, args = parse(config_parser("python -m mrr_jax.train_eval", __doc__,
                                      "the finished run's workdir"), argv)
        result = compare(c, args.workdir)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_bytes(Path(args.workdir) / "train_eval.json",
                       (json.dumps(result, indent=1) + "\n").encode())
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
