"""Choosing a plan or a cascade for a budget: the quality/cost frontier of grid rows.

A budget is relative FLOPs (``"0.5"``: at most half the full model's FLOPs on the same
candidates) or measured time per query on this machine (``"40ms"``). Rows are
``evaluation.grid`` rows (plans and cascades alike): ``metrics``, ``per_query``, ``flops_rel``,
``seconds`` and ``queries``. The frontier is the rows no other row beats on both cost and
quality (lower-or-equal cost with higher quality); the choice under a budget is the row of
best quality within it (the cheaper one on a tie). Changes against the reference row (``full``)
carry paired-bootstrap 95% intervals over the same queries.

    from mrr_jax.evaluation.frontier import choose
    best = choose(rows, "0.5")          # or "40ms"
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Budget:
    """``value`` in ``unit``: ``"flops"`` (relative to the full model) or ``"ms"`` (per query)."""

    value: float
    unit: str

    @classmethod
    def parse(cls, text: str) -> Budget:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms)?\s*", str(text))
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"budget {text!r}: expected relative FLOPs such as 0.5 or "
                             "milliseconds per query such as 40ms (a positive number)")
        return cls(float(m.group(1)), "ms" if m.group(2) else "flops")

    def __str__(self) -> str:
        return f"{self.value:g}ms" if self.unit == "ms" else f"{self.value:g}"

    def cost(self, row: Row) -> float:
        """The row's cost in this budget's unit."""
        if self.unit == "ms":
            return ms_per_query(row)
        return float(row["flops_rel"])


def ms_per_query(row: Row) -> float:
    """Measured scoring milliseconds per query of a grid row."""
    return 1000.0 * float(row["seconds"]) / max(int(row["queries"]), 1)


def candidates(rows: Sequence[Row]) -> list[Row]:
    """The rows that cost model compute (the first-stage baseline is not a choice here)."""
    return [r for r in rows if not r.get("baseline")]


def frontier(rows: Sequence[Row], metric: str = "RR@10", unit: str = "flops") -> list[Row]:
    """The rows on the quality/cost frontier, cheapest first."""
    b = Budget(1.0, unit)
    pts = sorted(candidates(rows), key=lambda r: (b.cost(r), -r["metrics"][metric]))
    out, best = [], float("-inf")
    for r in pts:
        if r["metrics"][metric] > best:
            out.append(r)
            best = r["metrics"][metric]
    return out


def choose(rows: Sequence[Row], budget: Budget | str, metric: str = "RR@10") -> Row | None:
    """The row of best ``metric`` whose cost is within ``budget`` (cheaper first on ties);
    None when nothing fits."""
    b = Budget.parse(budget) if isinstance(budget, str) else budget
    fits = [r for r in candidates(rows) if b.cost(r) <= b.value]
    if not fits:
        return None
    return max(fits, key=lambda r: (r["metrics"][metric], -b.cost(r)))


def frontier_table(rows: Sequence[Row], budget: Budget | str | None = None,
                   metric: str = "RR@10", reference: str = "full") -> str:
    """Markdown: every row (plans, cascades, the baseline) with relative FLOPs, ms/query,
    MRR@10 and nDCG@10, the change of ``metric`` against the ``reference`` row with its
    paired-bootstrap 95% interval, and whether it is on the frontier; then the choice under
    ``budget``."""
    from mrr_jax.data.metrics import paired_bootstrap

    b = Budget.parse(budget) if isinstance(budget, str) else budget
    ref = next((r for r in rows if r["plan"] == reference and not r.get("baseline")), None)
    on = {id(r) for r in frontier(rows, metric, b.unit if b else "flops")}
    head = ["plan or cascade", "kind", "FLOPs vs full", "ms/query", "MRR@10", "nDCG@10",
            f"{metric} vs {reference} [95% CI]", "frontier"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (bool(r.get("baseline")), float(r["flops_rel"]))):
        m = r["metrics"]
        change = "-"
        if ref is not None and r is not ref and "per_query" in r:
            qs = sorted(ref["per_query"])
            d = paired_bootstrap([ref["per_query"][q][metric] for q in qs],
                                 [r["per_query"][q][metric] for q in qs])
            change = f"{d['change']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        kind = "first stage" if r.get("baseline") else r.get("kind", "plan")
        lines.append("| " + " | ".join([
            r["plan"].replace("|", "\\|"), kind, f"{float(r['flops_rel']):.3f}",
            "-" if r.get("baseline") else f"{ms_per_query(r):.0f}",
            f"{m['RR@10']:.3f}", f"{m['nDCG@10']:.3f}", change,
            "yes" if id(r) in on else ""]) + " |")
    text = "\n".join(lines) + "\n"
    if b is not None:
        best = choose(rows, b, metric)
        unit = "relative FLOPs" if b.unit == "flops" else "ms per query"
        text += (f"\nBest under a budget of {b} {unit}: "
                 + (f"`{best['plan']}` ({metric} {best['metrics'][metric]:.3f}, "
                    f"{b.cost(best):.3g} {unit})" if best else "nothing fits") + "\n")
    return text
