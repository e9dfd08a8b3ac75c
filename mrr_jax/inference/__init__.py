"""The Reranker facade: a backbone plus adapters, scoring text."""
