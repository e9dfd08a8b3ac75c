"""Ranking metrics over runs, and the plan grid."""
