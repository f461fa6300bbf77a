"""Shared helpers for the benchmarks: timing, percentiles, ratio lines.

Benchmarks print ratios against a raw baseline measured in the same run, never absolute
targets: these machines are noisy, ratios are what carry over.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """Best wall time of ``runs`` runs: the least disturbed by other load on the machine."""
    return min(timed(fn) for _ in range(runs))


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio_line(label: str, ours: float, baseline: float, target: str) -> str:
    """``ours`` and ``baseline`` are rates (higher is better)."""
    return f"{label:<58} {ours / baseline:6.2f}x   (target {target}; ours {ours:,.0f}/s vs baseline {baseline:,.0f}/s)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
