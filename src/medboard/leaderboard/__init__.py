"""Leaderboards: published tables, ranking of stored results."""
