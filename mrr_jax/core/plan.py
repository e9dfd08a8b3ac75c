"""``Plan``: one sub-model of the Matryoshka re-ranker (a depth and a width schedule).

Text form (``Plan.parse`` / ``str(plan)`` round-trip)::

    depth=20 compress=8:2,16:2 mode=merge

``depth`` is the number of decoder layers run (the model stops there; default: all).
``compress`` maps a layer index to a ratio: before decoder layer ``layer`` runs (i.e. after
``layer`` layers), the passage segment shrinks from P to ceil(P / ratio) tokens; ratios compound.
``mode`` is ``merge`` (each group of ``ratio`` adjacent passage tokens becomes their
importance-weighted mean, the paper's) or ``select`` (keep the ceil(P / ratio) most important
passage tokens, in order). Plans are frozen and hashable: they are static arguments of jit.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

MODES = ("merge", "select")
_KEYS = ("depth", "compress", "mode")


@dataclasses.dataclass(frozen=True, init=False)
class Plan:
    """depth (None = full model), compress ((layer, ratio), ...) sorted by layer, mode."""

    depth: int | None
    compress: tuple[tuple[int, int], ...]
    mode: str

    def __init__(self, depth: int | None = None,
                 compress: Mapping[int, int] | tuple[tuple[int, int], ...] | None = None,
                 mode: str = "merge") -> None:
        items = dict(compress or {}) if not isinstance(compress, tuple) else dict(compress)
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ValueError(f"plan: depth must be a positive integer, got {depth!r}")
        for layer, ratio in items.items():
            if not isinstance(layer, int) or layer < 1:
                raise ValueError(f"plan: compress layer must be an integer >= 1, got {layer!r}")
            if not isinstance(ratio, int) or ratio < 1:
                raise ValueError(f"plan: compress ratio must be an integer >= 1, got "
                                 f"{ratio!r} at layer {layer}")
            if depth is not None and layer >= depth:
                raise ValueError(f"plan: compress layer {layer} is at or past depth {depth} "
                                 "(it would never take effect)")
        if mode not in MODES:
            raise ValueError(f"plan: mode must be one of {MODES}, got {mode!r}")
        # Ratio 1 is a no-op; dropping it makes equal plans compare and hash equal.
        norm = tuple(sorted((k, v) for k, v in items.items() if v > 1))
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "compress", norm)
        object.__setattr__(self, "mode", mode)

    @classmethod
    def parse(cls, text: str) -> Plan:
        """Parses ``"depth=20 compress=8:2,16:2 mode=merge"`` (any subset, any order).

        ``"full"`` (any case, surrounding spaces ignored) is the full model, ``Plan()``; so is
        the empty string, as every command line has always read ``--plan ""``. This is the one
        rule for plan text: every CLI and config goes through it."""
        if not isinstance(text, str):
            raise TypeError(f"plan text must be a str like 'depth=20 compress=8:2' or 'full', "
                            f"got {type(text).__name__} {text!r}")
        if text.strip().lower() in ("", "full"):
            return cls()
        fields: dict[str, str] = {}
        for token in text.split():
            key, sep, value = token.partition("=")
            if not sep or key not in _KEYS or not value:
                raise ValueError(f"plan {text!r}: cannot read {token!r}; expected "
                                 "depth=N compress=LAYER:RATIO[,LAYER:RATIO...] mode=merge|select")
            if key in fields:
                raise ValueError(f"plan {text!r}: {key} given twice")
            fields[key] = value
        depth = None
        if "depth" in fields:
            if not re.fullmatch(r"\d+", fields["depth"]):
                raise ValueError(f"plan {text!r}: depth must be an integer")
            depth = int(fields["depth"])
        compress: dict[int, int] = {}
        if fields.get("compress", "none") != "none":
            for item in fields["compress"].split(","):
                m = re.fullmatch(r"(\d+):(-?\d+)", item)
                if not m:
                    raise ValueError(f"plan {text!r}: compress entry {item!r} is not LAYER:RATIO")
                layer = int(m.group(1))
                if layer in compress:
                    raise ValueError(f"plan {text!r}: layer {layer} compressed twice")
                compress[layer] = int(m.group(2))
        return cls(depth=depth, compress=compress, mode=fields.get("mode", "merge"))

    def __str__(self) -> str:
        parts = []
        if self.depth is not None:
            parts.append(f"depth={self.depth}")
        if self.compress:
            parts.append("compress=" + ",".join(f"{k}:{v}" for k, v in self.compress))
        parts.append(f"mode={self.mode}")
        return " ".join(parts)

    def resolve(self, num_layers: int) -> Plan:
        """This plan checked against a model of ``num_layers`` layers, with depth filled in."""
        depth = num_layers if self.depth is None else self.depth
        if depth > num_layers:
            raise ValueError(f"plan {self}: depth {depth} is beyond the model's {num_layers} "
                             "layers")
        return Plan(depth=depth, compress=self.compress, mode=self.mode)

    def layer_lengths(self, num_layers: int, query_length: int, passage_length: int,
                      prompt_length: int) -> list[int]:
        """Sequence length each decoder layer 0..depth-1 runs at, for one pair."""
        plan = self.resolve(num_layers)
        ratios = dict(plan.compress)
        lengths, p = [], passage_length
        for layer in range(plan.depth):
            if layer in ratios:
                p = math.ceil(p / ratios[layer])
            lengths.append(query_length + p + prompt_length)
        return lengths

    def flops(self, cfg, query_length: int, passage_length: int, prompt_length: int) -> float:
        """Forward FLOPs of one pair under this plan (matmuls only, 2 per multiply-add).

        Per layer at length T: q/k/v/o projections 2T·D·H·(2N + 2K), attention logits and
        values 4·T²·N·H (the full square, as computed), MLP 6·T·D·F; plus one exit head per
        requested exit (negligible). ``cfg`` is a ``ModelConfig``."""
        d, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        n, k = cfg.num_heads, cfg.num_kv_heads
        total = 0.0
        for t in self.layer_lengths(cfg.num_layers, query_length, passage_length,
                                    prompt_length):
            total += 2 * t * d * h * (2 * n + 2 * k) + 4 * t * t * n * h + 6 * t * d * f
        return total

    def prefix_of(self, other: Plan) -> bool:
        """Whether this resolved plan is resolved plan ``other`` cut at this plan's depth: no
        deeper, the same compressions below this depth, the same mode when this one
        compresses. Its exit is then read off ``other``'s pass, and ``other`` can continue
        from its hidden states."""
        if self.depth is None or other.depth is None:
            raise ValueError("prefix_of compares resolved plans (depth filled in)")
        if self.depth > other.depth:
            return False
        below = tuple((layer, r) for layer, r in other.compress if layer < self.depth)
        return below == self.compress and (not below or other.mode == self.mode)

    def passage_lengths(self, passage_length: int) -> list[tuple[int, int]]:
        """[(layer, passage length from that layer on)] after each compression (nested ceils)."""
        out, p = [], passage_length
        for layer, ratio in self.compress:
            p = math.ceil(p / ratio)
            out.append((layer, p))
        return out
