"""Counts of fuzzing requests by status, printed at the end of the run (conftest)."""

from collections import Counter

REQUESTS: Counter[str] = Counter()
