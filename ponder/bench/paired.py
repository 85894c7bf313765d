"""Two strategies on the same problems, compared problem by problem.

Two accuracies' intervals overlap long before the difference between them is noise: on the
same problems the strategies' right and wrong answers are correlated, and the test that uses
that is on the problems where they disagree. So a bench reports, beside each point's own
interval, its difference from a baseline with Newcombe's interval for paired proportions
(method 10, Newcombe 1998, built from the two Wilson intervals) and McNemar's exact test."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ponder.bench.run import wilson


@dataclass(frozen=True)
class Paired:
    """`point` against `baseline` on the `problems` both answered."""

    problems: int
    both: int  # right in both
    only_point: int
    only_baseline: int

    @property
    def difference(self) -> float:
        return (self.only_point - self.only_baseline) / self.problems if self.problems else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of the difference in accuracy (Newcombe's method 10)."""
        n = self.problems
        if n == 0:
            return -1.0, 1.0
        a, b, c = self.both, self.only_point, self.only_baseline
        d = n - a - b - c
        p1, p2 = (a + b) / n, (a + c) / n
        l1, u1 = wilson(a + b, n)
        l2, u2 = wilson(a + c, n)
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        # Newcombe's phi carries a continuity correction: a positive association is shrunk by
        # n/2 (to no less than 0), which widens the interval where the two agree most.
        cross: float = a * d - b * c
        if cross > 0:
            cross = max(0.0, cross - n / 2)
        phi = cross / math.sqrt(margins) if margins else 0.0
        below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                              + (u2 - p2) ** 2))
        above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                              + (p2 - l2) ** 2))
        theta = p1 - p2
        return max(-1.0, theta - below), min(1.0, theta + above)

    @property
    def p_value(self) -> float:
        """McNemar's exact test, two-sided: how often the problems where the two disagree
        would split at least this unevenly if neither were better."""
        k, n = min(self.only_point, self.only_baseline), self.only_point + self.only_baseline
        if n == 0:
            return 1.0
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def pair(point: Mapping[str, bool], baseline: Mapping[str, bool]) -> Paired:
    """Per-problem correctness of the two, by problem id; compared on the ids both have."""
    shared = [i for i in point if i in baseline]
    return Paired(problems=len(shared),
                  both=sum(point[i] and baseline[i] for i in shared),
                  only_point=sum(point[i] and not baseline[i] for i in shared),
                  only_baseline=sum(baseline[i] and not point[i] for i in shared))
