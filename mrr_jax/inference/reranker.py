"""The public API: ``Reranker.from_pretrained``, ``compute_score``, ``rank``, ``score_tokens``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from mrr_jax.core.backbone import DTYPES, Backbone, init_heads
from mrr_jax.core.cascade import Cascade
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.decoder import Params
from mrr_jax.core.forward import score_forward
from mrr_jax.core.lora import Adapter
from mrr_jax.core.plan import Plan
from mrr_jax.core.windows import WindowSpec
from mrr_jax.inference import rank_args
from mrr_jax.inference.adapters import PlanAdapter, adapter_heads, adapters_for
from mrr_jax.inference.ranking import rank_requests, ranked, resolve_cascade
from mrr_jax.inference.windows import score_windows
from mrr_jax.inputs import batching
from mrr_jax.inputs.template import (
    DEFAULT_PROMPT,
    EncodedPair,
    PairTemplate,
    load_tokenizer,
    one_token_id,
)
from mrr_jax.runtime import compile_cache
from mrr_jax.weights.assets import missing_model
from mrr_jax.weights.streaming import load_checkpoint, stored_rows

COMPAT = ("default", "reference")

__all__ = ["COMPAT", "DTYPES", "Backbone", "PlanAdapter", "Reranker", "init_heads"]


class Reranker:
    """A Matryoshka re-ranker: a frozen :class:`~mrr_jax.core.backbone.Backbone` (decoder plus
    one linear exit head per layer ``start_layer..L``), its tokenizer and prompt, and the
    adapters each plan runs with. Exit k scores ``head_k(final_norm(h_k))`` at the last prompt
    token.

    ``compat="reference"`` reproduces the authors' code (importance from the last row of the
    padded batch, batches padded to a multiple of 8) so that checkpoints trained with it score as
    there; the default takes importance from each row's own scoring token, so a pair's scores
    never depend on the rest of its batch.

    A Reranker is never changed after construction: :meth:`place`, :meth:`folded`,
    :meth:`with_adapters` and :meth:`with_backbone` return new objects. The one piece of
    per-call state is ``last_truncated``: how many pairs the last :meth:`compute_score` call on
    this object cut to ``max_length`` (0 before any call), and ``last_windows``: the
    :class:`~mrr_jax.inference.windows.WindowStats` of the last call with ``windows=``.
    """

    __slots__ = ("_backbone", "_tokenizer", "_bos_token_id", "_prompt", "_compat", "_adapters",
                 "last_truncated", "last_windows")

    def __init__(self, cfg: ModelConfig, params: Params, heads: np.ndarray, *,
                 tokenizer=None, bos_token_id: int | None = None, start_layer: int = 4,
                 prompt: str = DEFAULT_PROMPT, compat: str = "default",
                 dtype: str = "float32", adapters: Sequence[PlanAdapter] = (),
                 place: bool = True) -> None:
        backbone = Backbone.create(cfg, params, heads, start_layer=start_layer, dtype=dtype,
                                   place=place)
        self._init(backbone, tokenizer, bos_token_id, prompt, compat, adapters)

    @classmethod
    def from_backbone(cls, backbone: Backbone, *, tokenizer=None,
                      bos_token_id: int | None = None, prompt: str = DEFAULT_PROMPT,
                      compat: str = "default", adapters: Sequence[PlanAdapter] = ()
                      ) -> Reranker:
        """A Reranker over an existing backbone (its arrays used as they are)."""
        rr = cls.__new__(cls)
        rr._init(backbone, tokenizer, bos_token_id, prompt, compat, adapters)
        return rr

    def _init(self, backbone: Backbone, tokenizer, bos_token_id: int | None, prompt: str,
              compat: str, adapters: Sequence[PlanAdapter]) -> None:
        if compat not in COMPAT:
            raise ValueError(f"compat must be one of {COMPAT}, got {compat!r}")
        if not isinstance(backbone, Backbone):
            raise TypeError(f"expected a Backbone, got {type(backbone).__name__}")
        adapters = tuple(adapters)
        bad = [type(a).__name__ for a in adapters if not isinstance(a, PlanAdapter)]
        if bad:
            raise TypeError(f"adapters must be PlanAdapters (PlanAdapter.load(folder, cfg, "
                            f"start_layer)), got {', '.join(bad)}")
        compile_cache.enable()
        put = object.__setattr__
        put(self, "_backbone", backbone)
        put(self, "_tokenizer", tokenizer)
        put(self, "_bos_token_id",
            bos_token_id if bos_token_id is not None else backbone.cfg.bos_token_id)
        put(self, "_prompt", prompt)
        put(self, "_compat", compat)
        put(self, "_adapters", adapters)
        put(self, "last_truncated", 0)
        put(self, "last_windows", None)

    def __setattr__(self, name: str, value) -> None:
        if name not in ("last_truncated", "last_windows"):
            raise AttributeError(f"Reranker.{name} cannot be set: a Reranker is immutable "
                                 "(with_adapters(), with_backbone(), place() and folded() "
                                 "return changed copies)")
        object.__setattr__(self, name, value)

    def _replace(self, *, backbone: Backbone | None = None,
                 adapters: Sequence[PlanAdapter] | None = None) -> Reranker:
        return Reranker.from_backbone(
            self._backbone if backbone is None else backbone, tokenizer=self._tokenizer,
            bos_token_id=self._bos_token_id, prompt=self._prompt, compat=self._compat,
            adapters=self._adapters if adapters is None else adapters)

    # ------------------------------------------------------------------ read-only views
    @property
    def backbone(self) -> Backbone:
        return self._backbone

    @property
    def cfg(self) -> ModelConfig:
        return self._backbone.cfg

    @property
    def params(self) -> Params:
        return self._backbone.params

    @property
    def heads(self):
        """Exit heads [E, D] float32."""
        return self._backbone.heads

    @property
    def start_layer(self) -> int:
        return self._backbone.start_layer

    @property
    def dtype(self):
        """The compute dtype (``jnp.float32`` or ``jnp.bfloat16``)."""
        return self._backbone.compute_dtype

    @property
    def adapters(self) -> tuple[PlanAdapter, ...]:
        return self._adapters

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def bos_token_id(self) -> int | None:
        return self._bos_token_id

    @property
    def prompt(self) -> str:
        return self._prompt

    @property
    def compat(self) -> str:
        return self._compat

    # ------------------------------------------------------------------ changed copies
    def place(self) -> Reranker:
        """A copy with host (numpy) weights moved onto the default device."""
        return self._replace(backbone=self._backbone.place())

    def with_adapters(self, adapters: Sequence[PlanAdapter]) -> Reranker:
        """A copy that runs with ``adapters`` (replacing this one's)."""
        return self._replace(adapters=tuple(adapters))

    def with_backbone(self, backbone: Backbone) -> Reranker:
        """A copy over another backbone of the same model (e.g. one sharded over a mesh)."""
        if (backbone.cfg, backbone.start_layer) != (self.cfg, self.start_layer):
            raise ValueError("with_backbone: another model or start_layer")
        return self._replace(backbone=backbone)

    def adapters_for(self, plan: Plan) -> tuple[Adapter, ...]:
        """The adapters a plan runs with: every ``stage1`` and ``vertical`` adapter, and a
        ``horizontal`` adapter when the plan compresses with its ratio (base + stage-1 +
        V + H(ratio); with several ratios in one plan their H adapters add)."""
        return adapters_for(self._adapters, plan)

    def folded(self, plan: Plan | str | None = None) -> Reranker:
        """A copy with the plan's adapters folded into the weights (serving one fixed plan
        without run-time adapter matmuls)."""
        plan = Plan.parse(plan) if isinstance(plan, str) else (plan or Plan())
        return self._replace(backbone=self._backbone.folded(self.adapters_for(plan)),
                             adapters=())

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32",
                        compat: str = "default", start_layer: int = 4,
                        prompt: str = DEFAULT_PROMPT, yes_token: str = "Yes",
                        yes_token_id: int | None = None, no_token: str | None = None,
                        adapters: Sequence[str | Path] = (), place: bool = True,
                        mesh=None) -> Reranker:
        """Loads a Hugging Face model directory or a ``.gguf`` file, plus saved adapters.

        The exit heads are initialised from the LM-head row of ``yes_token`` (or of
        ``yes_token_id``, which lets a model without a tokenizer load), minus the row of
        ``no_token`` when it is set (log-odds heads, docs/method.md §12); ``no_token=None``
        takes what the adapters were trained on (their metadata), else ``""``. ``adapters``: folders
        written by training (``<workdir>/adapters/<role>``); each is checked against the model
        and applied per plan (see ``adapters_for``). ``place=False`` keeps the weights in host
        memory (numpy) for a caller that shards them itself (training); ``mesh`` places them
        sharded over it instead (``runtime.sharding`` rules).
        Weights are read straight into ``dtype`` (``weights.streaming.load_checkpoint``)."""
        path = Path(path)
        if not path.exists():
            raise missing_model(path, "from_pretrained:")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        on_device = place or mesh is not None
        cfg, params, ckpt = load_checkpoint(path, dtype, on_device=on_device, mesh=mesh)
        try:
            tokenizer, bos = (ckpt.tokenizer(), ckpt.special_tokens.get("bos_token_id")) \
                if ckpt is not None else load_tokenizer(path)
        except FileNotFoundError:
            if yes_token_id is None:
                raise
            tokenizer, bos = None, None
        if yes_token_id is None:
            yes_token_id = one_token_id(tokenizer, yes_token, path, "yes_token_id")
        no_token = adapter_heads(adapters, no_token)
        no_id = None
        if no_token:
            if tokenizer is None:
                raise ValueError(f"{path}: no tokenizer to find the row of no_token={no_token!r}")
            no_id = one_token_id(tokenizer, no_token, path, "a one-token no_token")
        if not 1 <= start_layer <= cfg.num_layers:
            raise ValueError(f"{path}: start_layer {start_layer} is outside the model's "
                             f"{cfg.num_layers} layers (the first exit head must be at a layer "
                             f"1..{cfg.num_layers})")
        heads = init_heads(stored_rows(path, cfg, params, dtype, ckpt, (yes_token_id, no_id)),
                           yes_token_id, cfg.num_layers - start_layer + 1, no_id)
        loaded = [PlanAdapter.load(a, cfg, start_layer) for a in adapters]
        rr = cls(cfg, params, heads, tokenizer=tokenizer, bos_token_id=bos,
                 start_layer=start_layer, prompt=prompt, compat=compat, dtype=dtype,
                 adapters=loaded, place=on_device)
        if mesh is not None:  # the params are sharded already: this places the heads
            rr = rr.with_backbone(rr.backbone.sharded(mesh))
        return rr

    # ------------------------------------------------------------------ scoring
    def resolve_plan(self, plan: Plan | str | None = None) -> Plan:
        """``plan`` (a :class:`Plan`, its text as :meth:`Plan.parse` reads it, or None for the
        full model) checked against this model, depth filled in. Its depth must reach the first
        exit head (``start_layer``): a shallower sub-model has no head to score with."""
        plan = Plan.parse(plan) if isinstance(plan, str) else (plan or Plan())
        plan = plan.resolve(self.cfg.num_layers)
        if plan.depth < self.start_layer:
            raise ValueError(f"plan {plan}: depth {plan.depth} is below the first exit: this "
                             f"model has exit heads at layers {self.start_layer}.."
                             f"{self.cfg.num_layers} (start_layer {self.start_layer}); use a "
                             f"depth of at least {self.start_layer}")
        return plan

    def resolve_cascade(self, cascade: Cascade | str) -> Cascade:
        """``cascade`` (a ``Cascade`` or its text, e.g. ``"depth=12@100 > full@20"``) checked
        against this model: each stage's plan as :meth:`resolve_plan` checks it, no more
        stages than layers."""
        return resolve_cascade(self, cascade)

    def score_encoded(self, pairs: Sequence[EncodedPair], *, plan: Plan | str | None = None,
                      exits: Sequence[int] | None = None, batch_size: int = 32,
                      return_features: bool = False):
        """Scores tokenized pairs: [len(exits), n] float32 in the order ``exits`` were given
        (default: the plan's last layer). With ``return_features``, also the final-normed
        features [len(exits), n, D]."""
        plan = self.resolve_plan(plan)
        run_exits = rank_args.check_exits(plan, exits, self.start_layer)
        n = len(pairs)
        scores = np.zeros((len(run_exits), n), np.float32)
        feats = np.zeros((len(run_exits), n, self.cfg.hidden_size), np.float32) \
            if return_features else None
        for idx in batching.plan_batches(pairs, batch_size):
            rows = [pairs[i] for i in idx]
            arrays = batching.pack(rows, batching.batch_bucket(len(rows), batch_size))
            out = score_forward(
                self.params, self.heads, **{k: jnp.asarray(v) for k, v in arrays.items()},
                adapters=self.adapters_for(plan), cfg=self.cfg, plan=plan, exits=run_exits,
                start_layer=self.start_layer, compat=self.compat == "reference", dtype=self.dtype,
                return_aux=return_features)
            if return_features:
                out, aux = out
                feats[:, idx] = np.asarray(aux["features"], np.float32)[:, :len(idx)]
            scores[:, idx] = np.asarray(out)[:, :len(idx)]
        if exits is not None:  # back to the caller's order
            take = [run_exits.index(int(k)) for k in exits]
            scores = scores[take]
            feats = feats[take] if feats is not None else None
        return (scores, feats) if return_features else scores

    def score_tokens(self, input_ids: Sequence[Sequence[int]], query_lengths: Sequence[int],
                     prompt_lengths: Sequence[int], **kwargs):
        """Token-level entry point: each row is ``query segment + passage segment + prompt
        segment`` with the given segment lengths (unpadded). Returns [len(exits), n]; takes
        ``plan``, ``exits``, ``batch_size``, ``return_features`` as ``score_encoded``."""
        if not len(input_ids) == len(query_lengths) == len(prompt_lengths):
            raise ValueError("input_ids, query_lengths and prompt_lengths differ in length")
        pairs = [EncodedPair.from_ids(ids, q, p)
                 for ids, q, p in zip(input_ids, query_lengths, prompt_lengths)]
        return self.score_encoded(pairs, **kwargs)

    def encode(self, pairs: Sequence[tuple[str, str]], max_length: int = 512,
               query_max_length: int | None = None) -> list[EncodedPair]:
        """Tokenizes pairs with this model's template (see ``mrr_jax.inputs.template``)."""
        if self.tokenizer is None:
            raise ValueError("this Reranker has no tokenizer (no tokenizer.json where it was "
                             "loaded from); use score_tokens(...) with token ids")
        if self.bos_token_id is None:
            raise ValueError("no BOS token id in the tokenizer config or config.json")
        return PairTemplate(self.tokenizer, self.bos_token_id, self.prompt).encode(
            pairs, max_length, query_max_length)

    def compute_score(self, pairs: Sequence[tuple[str, str]], *,
                      plan: Plan | str | None = None, exits: Sequence[int] | None = None,
                      batch_size: int = 32, max_length: int = 512,
                      query_max_length: int | None = None, normalize: bool = False,
                      windows: WindowSpec | str | None = None) -> np.ndarray:
        """Relevance logits of (query, passage) pairs: [n], or [len(exits), n] with ``exits``.

        ``normalize`` applies a float32 sigmoid. Cut pairs are counted in ``last_truncated``
        (this call's count, replacing the previous call's) and reported with a warning.
        ``windows`` (a ``WindowSpec`` or its text, e.g. ``"max:size=384,stride=192"``; None:
        truncate) scores each passage as overlapping windows aggregated per document
        (:mod:`mrr_jax.inference.windows`; their cost in ``last_windows``)."""
        if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str):
            pairs = [pairs]
        if windows is not None:
            scores = score_windows(self, pairs, windows, plan=plan, exits=exits,
                                   batch_size=batch_size, max_length=max_length,
                                   query_max_length=query_max_length)
        else:
            encoded = self.encode(pairs, max_length, query_max_length)
            self.last_truncated = sum(e.truncated for e in encoded)
            rank_args.warn_truncated(self.last_truncated, len(encoded), max_length)
            scores = self.score_encoded(encoded, plan=plan, exits=exits, batch_size=batch_size)
        if normalize:
            scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float32)))
        return scores if exits is not None else scores[0]

    def rank(self, query: str, documents: Iterable[str], *, plan: Plan | str | None = None,
             cascade: Cascade | str | None = None, top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None,
             fuse: float | None = None, fuse_norm: str = "minmax", **kwargs) -> list[dict]:
        """Documents sorted by score, best first: ``[{"index", "score", "document"}]``.

        ``query``: a non-empty str. ``documents``: str passages, in a list, a tuple or any
        other sequence; another iterable (a generator) is read into a list first, and its
        items are what ``"document"`` returns. A str or bytes is refused (it would be ranked
        as its characters); no documents give ``[]``. ``top_k``: None ranks every document,
        an int >= 1 keeps the ``top_k`` best (all of them when there are fewer); anything
        else is an error. ``"index"`` is the document's position in ``documents``; ties keep
        that order. Other keywords (``batch_size``, ``max_length``, ...) go to
        :meth:`compute_score` (``windows=`` too), except ``exits``: a ranking is read at one
        exit (the plan's depth).

        ``cascade="depth=12@100 > full@20"`` (instead of a plan; :mod:`mrr_jax.core.cascade`):
        each result has ``"stage"`` (the last stage that scored it; -1 none) and its score.

        ``fuse=w`` (in [0, 1]) ranks by the model's score fused with ``first_stage_scores``
        (one per document, same order; e.g. BM25's), each normalised over these documents
        (``fuse_norm``: ``minmax`` or ``zscore``): ``(1 - w) * model + w * first``, see
        :mod:`mrr_jax.data.fusion`. Each result keeps the model's ``"score"`` and adds
        ``"fused_score"``."""
        if "exits" in kwargs:
            raise TypeError("rank() takes no exits=: it ranks at the plan's depth (pass "
                            "plan='depth=N' to rank at exit N)")
        docs = rank_args.documents_of(documents)
        rank_args.check_text("query", query)
        rank_args.check_top_k(top_k)
        first = rank_args.first_stage_of(first_stage_scores, fuse, fuse_norm, len(docs))
        if cascade is not None:
            return self.rank_batch([(query, docs)], cascade=cascade, top_k=top_k, fuse=fuse,
                                   plan=plan, **kwargs)[0]
        if not docs:
            return []
        scores = self.compute_score([(query, d) for d in docs], plan=plan, **kwargs)
        return ranked(docs, scores, first, fuse, fuse_norm, top_k)

    def rank_batch(self, requests: Sequence[tuple[str, Sequence[str]]],
                   **kwargs) -> list[list[dict]]:
        """:meth:`rank` for many ``(query, documents)`` requests at once, one ranking each; all
        requests' pairs share batches. Keywords: ``plan`` or ``cascade``, ``top_k``,
        ``first_stage_scores`` (a list per request), ``fuse``, ``fuse_norm``, ``batch_size``,
        ``max_length``, ``query_max_length``, ``windows`` (not with a cascade),
        ``tokens_per_batch``, ``queries_in_flight``
        (a cascade's group of requests; see ``inference.ranking.rank_requests``)."""
        return rank_requests(self, requests, **kwargs)
