"""The scoring job's settings (:class:`JobConfig`: the command-line flags and ``--config`` keys)
and its fingerprint: what the results depend on, hashed, so that ``--resume`` and the shards of
one job can recognise each other."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrr_jax.core.plan import Plan
from mrr_jax.core.windows import WindowSpec
from mrr_jax.data.fusion import check_norm, check_weight
from mrr_jax.data.required import require_file
from mrr_jax.runtime.digest import file_sha256, json_digest

FORMAT_VERSION = 1


class JobError(Exception):
    """A job-level problem (output folder, resume, merge): reported without a traceback."""


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
    fuse: float | None = None
    fuse_norm: str = "minmax"
    cascade: str | None = None
    windows: str | None = None

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
        """Raise :class:`JobError` on missing or contradictory settings, and
        ``FileNotFoundError`` naming the flag for an input file that does not exist."""
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
        self._validate_fuse()
        self._validate_cascade()
        self._validate_windows()
        for a in self.adapters:
            if not Path(a).is_dir():
                raise JobError(f"--adapters {a}: no such adapter folder")
        for name in ("corpus", "queries", "run", "candidates"):  # FileNotFoundError, named
            if getattr(self, name):
                require_file(getattr(self, name), f"--{name}")

    def _validate_fuse(self) -> None:
        """``--fuse WEIGHT`` in [0, 1], with the first-stage scores of ``--run``."""
        if self.fuse is None:
            if self.fuse_norm != "minmax":
                raise JobError("--fuse-norm is used only with --fuse WEIGHT")
            return
        try:
            check_weight(self.fuse)
            check_norm(self.fuse_norm)
        except ValueError as e:
            raise JobError(f"--fuse: {e}") from None
        if self.candidates:
            raise JobError("--fuse takes the first-stage scores from --run; it cannot be used "
                           "with --candidates")

    def _validate_cascade(self) -> None:
        """``--cascade`` replaces ``--plan`` and takes no ``--fuse``; its first stage scores
        the ``--top-k`` candidates (a first ``@KEEP``, if given, must equal ``--top-k``)."""
        if self.cascade is None:
            return
        from mrr_jax.core.cascade import Cascade

        try:
            c = Cascade.parse(self.cascade)
        except ValueError as e:
            raise JobError(f"--cascade: {e}") from None
        if self.plan != ["full"]:
            raise JobError("--cascade replaces --plan: give one or the other")
        if self.fuse is not None:
            raise JobError("--fuse applies to a plan's scores, not to a cascade's")
        keep = c.stages[0].keep
        if keep is not None and keep != self.top_k:
            raise JobError(f"--cascade: the first stage keeps {keep} candidates but --top-k is "
                           f"{self.top_k}; make them equal, or leave out the first @KEEP")

    def _validate_windows(self) -> None:
        """``--windows AGG[:size=N,stride=N,max_windows=N]`` is readable, fits
        ``--max-length`` and is not combined with ``--cascade``."""
        if self.windows is None:
            return
        try:
            WindowSpec.parse(self.windows).check(int(self.max_length))
        except ValueError as e:
            raise JobError(f"--windows: {e}") from None
        if self.cascade is not None:
            raise JobError("--windows applies to plans' scores, not to a cascade's")

    def window_text(self) -> str | None:
        """The job's window setting in its canonical text (``str(WindowSpec)``), or None."""
        return None if self.windows is None else str(WindowSpec.parse(self.windows))

    def hashed(self, plans: Sequence[Plan], model: Path) -> dict[str, Any]:
        """What the results depend on (``model``: the resolved model path; inputs and adapters
        fingerprinted): two runs of the same job share it; the shard, --resume, --out and
        display options are left out. ``adapters`` appears only when some are given, and
        ``fuse`` (``{weight, norm}``) only with ``--fuse``, ``cascade`` only with
        ``--cascade`` and ``windows`` only with ``--windows``, so other jobs keep the hash they had
        before these keys existed."""
        return {
            "version": FORMAT_VERSION,
            "model": input_fingerprint(str(model)),
            **({"adapters": [input_fingerprint(a) for a in self.adapters]}
               if self.adapters else {}),
            "inputs": {name: input_fingerprint(getattr(self, name))
                       for name in ("corpus", "queries", "run", "candidates")
                       if getattr(self, name)},
            "plans": [str(p) for p in plans],
            **{name: getattr(self, name) for name in (
                "top_k", "batch_size", "tokens_per_batch", "max_length", "query_max_length",
                "dtype", "compat", "chunk_pairs", "max_queries", "on_missing", "tag")},
            **({"fuse": {"weight": float(self.fuse), "norm": self.fuse_norm}}
               if self.fuse is not None else {}),
            **({"cascade": self.cascade_text(plans)} if self.cascade is not None else {}),
            **({"windows": self.window_text()} if self.windows is not None else {}),
        }

    def cascade_text(self, plans: Sequence[Plan]) -> str:
        """The job's cascade with its stages' resolved ``plans``, as text."""
        from mrr_jax.core.cascade import Cascade, Stage

        c = Cascade.parse(self.cascade)
        return str(Cascade(Stage(p, s.keep) for p, s in zip(plans, c.stages)))


_INT_KEYS = ("top_k", "batch_size", "tokens_per_batch", "max_length", "query_max_length",
             "chunk_pairs", "max_queries")
_BOOL_KEYS = ("resume", "merge_only", "distributed", "progress")


def _typed(name: str, value: Any, source: str) -> Any:
    """A config-file value checked against its flag's type."""
    if name in _INT_KEYS:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif name in _BOOL_KEYS:
        ok = isinstance(value, bool)
    elif name == "fuse":
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    elif name in ("plan", "adapters"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = value is None or isinstance(value, str)
    if not ok:
        raise JobError(f"{source}: {name} has the wrong type ({type(value).__name__}: "
                       f"{value!r})")
    return value


def job_fingerprint(hashed: Mapping[str, Any]) -> str:
    """The job's identity, stored as ``config_hash`` in every shard manifest: SHA-256 of the
    canonical JSON (keys sorted) of :meth:`JobConfig.hashed`."""
    return json_digest(hashed)


_HASH_LIMIT = 1 << 28


def input_fingerprint(path: str) -> dict[str, Any]:
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
    return {"size": st.st_size, "sha256": file_sha256(p)}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise JobError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(m.group(1)), int(m.group(2))
