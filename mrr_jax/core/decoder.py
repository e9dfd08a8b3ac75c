"""The decoder (Llama, Mistral, Qwen2, Gemma2): one layer is a flax linen module, applied
functionally; the stack of layers is one ``lax.scan`` over stacked weights.

Einsum letters, used everywhere in mrr_jax: B batch, T query length, S key length, D model,
N query heads, K kv heads, G = N // K query heads per kv head, H head dim, F MLP, V vocab,
L layers, E exits.

Param tree: one layout, in memory and in our own checkpoints, defined by ``mrr_jax.core.spec``
(names, shapes, when each weight exists): ``embed`` [V, D], ``lm_head`` [V, D] (absent when
tied), ``final_norm`` [D] and ``layers/<name>`` stacked on a leading L axis, so that a run of
layers is one ``lax.scan``: q [L, D, N, H], k/v [L, D, K, H], o [L, N, H, D], gate/up [L, D, F],
down [L, F, D], norms [L, D], biases as their projection's output axes.

:class:`DecoderLayer` is a ``flax.linen`` module applied with ``apply`` and variable
collections: ``params`` is one layer's slice of the stacked tree (exactly its keys and
shapes: the module declares them from the spec), ``lora`` holds the plan's adapters (one entry
per adapter: its layer slice ``{target: {a, b}}``; scales and dropout rates are static module
fields) and the ``dropout`` rng stream drives adapter dropout. Linen ``apply`` rather than NNX
split/merge because the weights stay plain pytrees everywhere: the stacked checkpoint layout is
the param tree itself (no module state to split out or merge back, no per-layer module
objects), a plan's adapters are just one more collection next to ``params`` (never merged into
the base), and ``jit``, ``lax.scan``, ``jax.checkpoint`` and ``value_and_grad`` see ordinary
dicts of arrays; the scan body slices layer ``i`` and applies the module to it.

Tokens are described by ``positions`` (their RoPE position) and ``valid`` (real token, not pad);
attention is causal over *positions*, not over array indices, so a sequence may be laid out in
any physical order (the width-compression path relies on this). Norms, softmax and attention
logits run in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mrr_jax.core import lora as lora_lib
from mrr_jax.core import spec
from mrr_jax.core.config import ModelConfig
from mrr_jax.core.lora import Adapter

Params = dict
_NEG = float(np.finfo(np.float32).min)


def rms_norm(x: jax.Array, w: jax.Array, cfg: ModelConfig) -> jax.Array:
    """RMSNorm over the last axis, computed in float32; ``x`` [..., D], ``w`` [D]."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.rms_norm_eps)
    if cfg.norm_plus_one:  # Gemma: (x * (1 + w)) in float32, then cast.
        return (y * (1.0 + w.astype(jnp.float32))).astype(x.dtype)
    return w.astype(x.dtype) * y.astype(x.dtype)  # Llama: cast, then scale.


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """RoPE inverse frequencies [H/2], float32, as transformers computes them."""
    h = cfg.head_dim
    exps = np.arange(0, h, 2, dtype=np.int64).astype(np.float32) / np.float32(h)
    inv = (1.0 / (np.float32(cfg.rope_theta) ** exps)).astype(np.float32)
    s = dict(cfg.rope_scaling)
    kind = s.get("rope_type", "default")
    if kind == "linear":
        inv = inv / np.float32(s["factor"])
    elif kind == "llama3":
        factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / lo, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        inv = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


def rope_tables(positions: jax.Array, cfg: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """cos, sin [B, T, H] (float32) for integer ``positions`` [B, T] (rotate-half layout)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(cfg))
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates ``x`` [B, T, heads, H] by cos/sin [B, T, H] (HF rotate-half convention)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    c, s = cos[:, :, None, :].astype(x.dtype), sin[:, :, None, :].astype(x.dtype)
    return x * c + rotated * s


def attention_masks(positions: jax.Array, valid: jax.Array, cfg: ModelConfig):
    """Boolean masks [B, T, S]: (full causal, sliding-window causal or None).

    Key s is visible to query t when it is a real token and ``pos[s] <= pos[t]`` (and, for
    sliding layers, ``pos[t] - pos[s] < window``)."""
    pq, pk = positions[:, :, None], positions[:, None, :]
    full = valid[:, None, :] & (pk <= pq)
    if not cfg.any_sliding:
        return full, None
    return full, full & (pq - pk < cfg.sliding_window)


def _activation(name: str):
    if name in ("silu", "swish"):
        return jax.nn.silu
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    raise ValueError(f"unsupported hidden activation {name!r}")


class DecoderLayer(nn.Module):
    """One pre-norm decoder layer (Gemma2 adds post-norms), applied functionally::

        DecoderLayer(cfg, scales, rates).apply(
            {"params": layer_slice, "lora": {"0": adapter0_slice, ...}},
            x, cos, sin, mask, probe, rngs={"dropout": key})  # -> (x', importance)

    ``lora_scales`` / ``lora_rates``: each adapter's scale and dropout rate (adapter ``n`` is
    the ``lora`` entry ``str(n)``); dropout runs only with a ``dropout`` rng, one independent
    mask per projection per adapter, as PEFT's per-module ``lora_dropout``."""

    cfg: ModelConfig
    lora_scales: tuple[float, ...] = ()
    lora_rates: tuple[float, ...] = ()

    def setup(self) -> None:
        self.w = {w.name: self.param(w.name, spec.jax_init(w, self.cfg), spec.shape(w, self.cfg))
                  for w in spec.layer_weights(self.cfg)}

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array,
                 probe: jax.Array | None = None):
        """x [B, T, D], cos/sin [B, T, H], mask [B, T, S=T] bool, probe [B] or None.
        Returns (x [B, T, D], importance [B, S] or None: see :meth:`attention`)."""
        cfg, w = self.cfg, self.w
        a, importance = self.attention(rms_norm(x, w["attn_norm"], cfg), cos, sin, mask, probe)
        if cfg.post_norms:
            a = rms_norm(a, w["post_attn_norm"], cfg)
        x = x + a
        m = self.mlp(rms_norm(x, w["mlp_norm"], cfg))
        if cfg.post_norms:
            m = rms_norm(m, w["post_mlp_norm"], cfg)
        return x + m, importance

    def proj(self, x: jax.Array, name: str, eq: str) -> jax.Array:
        """``einsum(eq, x, W_name) + bias`` plus each adapter's low-rank delta."""
        y = jnp.einsum(eq, x, self.w[name].astype(x.dtype))
        if name + "_bias" in self.w:
            y = y + self.w[name + "_bias"].astype(x.dtype)
        for n, (scale, rate) in enumerate(zip(self.lora_scales, self.lora_rates)):
            factors = self.get_variable("lora", str(n)) or {}
            if name in factors:
                key = None
                if rate > 0.0 and self.has_rng("dropout"):
                    key = self.make_rng("dropout")  # a fresh key per call: one mask each
                y = y + lora_lib.delta(x, factors[name]["a"], factors[name]["b"], eq, scale,
                                       rate, key)
        return y

    def attention(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array,
                  probe: jax.Array | None = None):
        """Self-attention. Returns (out [B, T, D], importance): importance [B, S] (float32) is
        the attention paid by query row ``probe`` [B] to each key, summed over heads (None
        when ``probe`` is None). Without a probe (a layer that feeds no compression) and
        without a logit soft-cap, attention is ``jax.nn.dot_product_attention`` (fused: cuDNN
        on GPU where it applies); otherwise the probabilities are computed explicitly."""
        cfg = self.cfg
        b, t, _ = x.shape
        k_heads, g = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads
        q = self.proj(x, "q", "BTD,DNH->BTNH")
        k = self.proj(x, "k", "BSD,DKH->BSKH")
        v = self.proj(x, "v", "BSD,DKH->BSKH")
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if probe is None and cfg.attn_softcap is None:
            # No importance row wanted: the fused kernel (cuDNN on GPU, XLA elsewhere), same
            # math: f32 logits and softmax, the same boolean mask, probs in v's dtype.
            out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None],
                                               scale=cfg.attn_scale)
            return self.proj(out, "o", "BTNH,NHD->BTD"), None
        q = q.reshape(b, t, k_heads, g, cfg.head_dim)
        logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, k, preferred_element_type=jnp.float32)
        logits = logits * cfg.attn_scale
        if cfg.attn_softcap is not None:
            logits = jnp.tanh(logits / cfg.attn_softcap) * cfg.attn_softcap
        logits = jnp.where(mask[:, None, None], logits, _NEG)
        probs = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("BKGTS,BSKH->BTKGH", probs.astype(v.dtype), v)
        out = self.proj(out.reshape(b, t, cfg.num_heads, cfg.head_dim), "o", "BTNH,NHD->BTD")
        importance = None
        if probe is not None:
            rows = jnp.take_along_axis(probs, probe[:, None, None, None, None], axis=3)
            importance = rows.sum(axis=(1, 2, 3))  # [B,K,G,1,S] -> [B, S]
        return out, importance

    def mlp(self, x: jax.Array) -> jax.Array:
        """Gated MLP: down(act(gate(x)) * up(x)); x [B, T, D]."""
        act = _activation(self.cfg.hidden_act)
        gate = self.proj(x, "gate", "BTD,DF->BTF")
        up = self.proj(x, "up", "BTD,DF->BTF")
        return self.proj(act(gate) * up, "down", "BTF,FD->BTD")


def embed(params: Params, input_ids: jax.Array, cfg: ModelConfig, dtype) -> jax.Array:
    """Token embeddings [B, T, D] in ``dtype`` (Gemma2 scales by sqrt(D) in that dtype)."""
    x = params["embed"].astype(dtype)[input_ids]
    if cfg.embed_scale is not None:
        x = x * jnp.asarray(cfg.embed_scale, dtype)
    return x


def run_layers(params: Params, x: jax.Array, positions: jax.Array, valid: jax.Array,
               cfg: ModelConfig, start: int, stop: int, *, gather: jax.Array | None = None,
               probe: jax.Array | None = None, keep_hidden: bool = False,
               adapters: Sequence[Adapter] = (), rng: jax.Array | None = None,
               remat: bool = False):
    """Runs decoder layers ``start..stop-1`` as one ``lax.scan`` over the stacked weights (the
    body slices layer ``i`` and applies :class:`DecoderLayer` to it).

    ``adapters``: LoRA trees added to the layer weights at run time (``mrr_jax.core.lora``), the
    ``lora`` collection; ``rng`` turns on their dropout (training: the ``dropout`` stream gets
    ``fold_in(rng, i)`` at layer i); ``remat`` recomputes each layer in the backward pass.

    x [B, T, D]; positions [B, T] int; valid [B, T] bool. Per layer it can record
    ``x[b, gather[b]]`` (gather [B] -> [stop-start, B, D]), the importance row of ``probe`` [B]
    ([stop-start, B, T]) and, with ``keep_hidden``, the whole output ([stop-start, B, T, D]).
    Returns (x, records dict)."""
    if stop <= start:
        return x, {}
    cos, sin = rope_tables(positions, cfg)
    full, sliding = attention_masks(positions, valid, cfg)
    flags = jnp.asarray(cfg.sliding_layers or (False,) * cfg.num_layers)
    layers = jax.tree.map(jnp.asarray, params["layers"])  # host (numpy) weights too
    layer = DecoderLayer(cfg, tuple(ad.scale for ad in adapters),
                         tuple(ad.dropout for ad in adapters))

    def at(i, tree):
        return jax.tree.map(lambda w: w[i], tree)

    def body(h, i):
        variables = {"params": at(i, layers)}
        if adapters:
            variables["lora"] = {str(n): at(i, ad.params.get("layers", {}))
                                 for n, ad in enumerate(adapters)}
        rngs = None if rng is None else {"dropout": jax.random.fold_in(rng, i)}
        mask = full if sliding is None else jnp.where(flags[i], sliding, full)
        h, importance = layer.apply(variables, h, cos, sin, mask, probe, rngs=rngs)
        rec = {}
        if gather is not None:
            rec["gathered"] = jnp.take_along_axis(h, gather[:, None, None], axis=1)[:, 0]
        if probe is not None:
            rec["importance"] = importance
        if keep_hidden:
            rec["hidden"] = h
        return h, rec

    if remat:
        body = jax.checkpoint(body)
    return jax.lax.scan(body, x, jnp.arange(start, stop))


def lm_head_weight(params: Params) -> jax.Array:
    """The output projection [V, D] (the embedding when tied)."""
    return params.get("lm_head", params["embed"])


def lm_forward(params: Params, input_ids: jax.Array, attention_mask: jax.Array,
               cfg: ModelConfig, dtype=jnp.float32):
    """Plain causal-LM forward on right-padded input, for parity with transformers.

    input_ids, attention_mask [B, T]. Returns (logits [B, T, V] float32, hidden [L+1, B, T, D]):
    hidden[0] is the embedding output and hidden[l] the output of layer l (not normed), as
    transformers' ``output_hidden_states``."""
    b, t = input_ids.shape
    positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    x0 = embed(params, input_ids, cfg, dtype)
    x, rec = run_layers(params, x0, positions, attention_mask.astype(bool), cfg, 0,
                        cfg.num_layers, keep_hidden=True)
    h = rms_norm(x, params["final_norm"], cfg)
    logits = jnp.einsum("BTD,VD->BTV", h, lm_head_weight(params).astype(h.dtype),
                        preferred_element_type=jnp.float32)
    if cfg.final_softcap is not None:
        logits = jnp.tanh(logits / cfg.final_softcap) * cfg.final_softcap
    return logits, jnp.concatenate([x0[None], rec["hidden"]], axis=0)
