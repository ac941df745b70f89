"""Continual-learning scores of an accuracy matrix (Lopez-Paz & Ranzato 2017, GEM, section 4;
Chaudhry et al. 2018, RWalk, section 4).

R is T x T with R[i][j] the test accuracy on task j after learning tasks 0..i (row 0: after the
first task). With T tasks:

    ACC            = (1/T) sum_j R[T-1][j]                        average accuracy at the end
    BWT            = (1/(T-1)) sum_{j<T-1} (R[T-1][j] - R[j][j])   backward transfer (< 0:
                                                                   forgetting)
    forgetting_j   = max_{l in j..T-2} R[l][j] - R[T-1][j]        for j < T-1
    forgetting     = (1/(T-1)) sum_{j<T-1} forgetting_j

Forgetting takes the best accuracy a task had *after it was learned* (rows l >= j), as Chaudhry
et al. intend and Avalanche computes it; rows before task j was learned do not count.
With T = 1 there is nothing to forget: BWT and forgetting are 0.
"""
from __future__ import annotations

from typing import Sequence

Matrix = Sequence[Sequence[float]]


def _check(r: Matrix) -> int:
    t = len(r)
    if t == 0 or any(len(row) != t for row in r):
        raise ValueError(f"the accuracy matrix must be square and non-empty; got {r!r}")
    return t


def average_accuracy(r: Matrix) -> float:
    t = _check(r)
    return sum(r[t - 1]) / t


def backward_transfer(r: Matrix) -> float:
    t = _check(r)
    if t == 1:
        return 0.0
    return sum(r[t - 1][j] - r[j][j] for j in range(t - 1)) / (t - 1)


def forgetting_per_task(r: Matrix) -> list[float]:
    """forgetting_j for j = 0..T-2."""
    t = _check(r)
    return [max(r[l][j] for l in range(j, t - 1)) - r[t - 1][j] for j in range(t - 1)]


def forgetting(r: Matrix) -> float:
    per_task = forgetting_per_task(r)
    return sum(per_task) / len(per_task) if per_task else 0.0


def summary(r: Matrix) -> dict:
    """{acc, bwt, forgetting, forgetting_per_task, matrix}: the numbers a report shows."""
    return {"acc": average_accuracy(r), "bwt": backward_transfer(r), "forgetting": forgetting(r),
            "forgetting_per_task": forgetting_per_task(r), "matrix": [list(row) for row in r]}
