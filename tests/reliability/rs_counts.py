"""Counters shared by the reliability tests and the summary lines of their conftest."""

from collections import Counter

COUNTS: Counter[str] = Counter()
