"""mrr_jax: the Matryoshka Re-Ranker in JAX -- one LLM re-ranker cut at run time to any depth
and width."""

from mrr_jax.core.plan import Plan
from mrr_jax.inference.reranker import Reranker

__all__ = ["Plan", "Reranker"]
