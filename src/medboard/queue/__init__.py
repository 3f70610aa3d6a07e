"""Submissions and the workers that evaluate them."""
