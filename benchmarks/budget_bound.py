"""The most accuracy any run budget can buy on the fake quiz, per token: an upper bound for
`total_budget_sweep.py`, worked out exactly rather than by running a policy.

On the quiz (`make_quiz.py`: 30% of problems right with p=0.9, 40% with 0.5, 30% with 0.1;
a wrong reply is one of 3 distractors, the k-th with weight 2^-k, so 4/7, 2/7 and 1/7 of
the wrong replies, as `ponder.testing.quiz` draws them; log-probabilities say nothing) the
only signal a strategy sees is how its samples agree. A request for m samples costs one prompt
(P tokens, charged once for all m) plus m completions (C tokens each). The best policy that
sees only the answers, one request at a time, is a dynamic programme over vote counts: after
each request, stop and answer the most probable answer, or ask for m more. With a price
lambda per token, each problem's best policy maximises accuracy - lambda * tokens; sweeping
lambda traces the concave frontier of expected accuracy against mean tokens a problem, and
no policy on these signals that asks for at most MAX_SAMPLES samples a problem lies above
it (policies may be mixed across problems, which is what linear interpolation between
frontier points stands for; the cap is far above what the budgets quoted can pay for).

    python benchmarks/budget_bound.py --prompt 82 --completion 83

P and C default to what `best_of_n n=3` measured on the sweep (prompt 82, 83 a reply). Prints
the frontier and, for each multiple of best_of_n n=3's spend, the best accuracy reachable.
Writes benchmarks/results/budget_bound.md.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from pathlib import Path

from ponder.testing.quiz import DEFAULT_DISTRACTORS, distractor_weights

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "budget_bound.md"
MIX = ((0.3, 0.9), (0.4, 0.5), (0.3, 0.1))  # make_quiz.py LEVELS and PATTERN: (share, p_correct)
WRONG = DEFAULT_DISTRACTORS
LABELS = WRONG + 1
# No policy near the budgets quoted asks for more than this (test_budget_bound checks that
# raising it moves no quoted figure); a request holds at most MAX_REQUEST samples.
MAX_SAMPLES = 30
MAX_REQUEST = 8
MULTIPLES = (0.25, 0.5, 0.9, 1.0, 2.0)
Counts = tuple[int, ...]  # samples per distinct answer seen, largest first
RIGHT = 0  # role 0 is the right answer; role k > 0 the k-th distractor


def role_chances(p: float) -> list[float]:
    """The chance that a reply gives each role's answer, at skill p: the right one with p,
    the k-th distractor with (1 - p) times its share of the wrong replies."""
    weights = distractor_weights(WRONG)
    return [p, *((1 - p) * w / sum(weights) for w in weights)]


@functools.cache
def hypotheses(counts: Counts) -> tuple[tuple[float, tuple[int, ...], tuple[float, ...]], ...]:
    """Every way the seen answers can be what they are: a skill p and a distinct role for
    each seen answer, with its weight (prior times the chance of these counts; the order of
    the samples is the same factor in every hypothesis) and the roles' chances at that p."""
    out = []
    for prior, p in MIX:
        chances = role_chances(p)
        for roles in itertools.permutations(range(LABELS), len(counts)):
            weight = prior
            for role, count in zip(roles, counts, strict=True):
                weight *= chances[role] ** count
            out.append((weight, roles, tuple(chances)))
    return tuple(out)


def answer_value(counts: Counts) -> float:
    """The chance that the best answer to give is right. Only a seen answer can be given,
    though an unseen one may be likelier right (one vote each at p = 0.1): no policy can
    name an answer it has not seen."""
    if not counts:
        return 0.0
    found = hypotheses(counts)
    total = sum(w for w, _, _ in found)
    return max(sum(w for w, roles, _ in found if roles[i] == RIGHT)
               for i in range(len(counts))) / total


def outcomes(counts: Counts) -> list[tuple[float, Counts]]:
    """One more sample: the chance of each next state."""
    found = hypotheses(counts)
    total = sum(w for w, _, _ in found)
    out: list[tuple[float, Counts]] = []
    for j in range(len(counts)):
        chance = sum(w * chances[roles[j]] for w, roles, chances in found) / total
        bumped = list(counts)
        bumped[j] += 1
        out.append((chance, tuple(sorted(bumped, reverse=True))))
    if len(counts) < LABELS:
        fresh = sum(w * sum(c for r, c in enumerate(chances) if r not in roles)
                    for w, roles, chances in found) / total
        out.append((fresh, tuple(sorted((*counts, 1), reverse=True))))
    return out


@functools.cache
def after(counts: Counts, m: int) -> tuple[tuple[float, Counts], ...]:
    """m more samples: the chance of each state after them."""
    states: dict[Counts, float] = {counts: 1.0}
    for _ in range(m):
        nxt: dict[Counts, float] = {}
        for state, w in states.items():
            for pw, s in outcomes(state):
                nxt[s] = nxt.get(s, 0.0) + w * pw
        states = nxt
    return tuple((w, s) for s, w in states.items())


def solve(price: float, prompt: int, completion: int) -> tuple[float, float]:
    """The best policy at `price` per token: its expected accuracy and tokens a problem."""

    @functools.cache
    def best(counts: Counts) -> tuple[float, float, float]:
        stop = answer_value(counts)
        choice = (stop, stop, 0.0)  # (objective, accuracy, tokens)
        room = MAX_SAMPLES - sum(counts)
        for m in range(1, min(MAX_REQUEST, room) + 1):
            cost = prompt + m * completion
            acc = tok = 0.0
            for w, state in after(counts, m):
                _, a, t = best(state)
                acc += w * a
                tok += w * t
            tok += cost
            objective = acc - price * tok
            if objective > choice[0] + 1e-12:
                choice = (objective, acc, tok)
        return choice

    _, acc, tok = best(())
    return acc, tok


def frontier(prompt: int, completion: int) -> list[tuple[float, float]]:
    """Points (tokens a problem, accuracy) of the concave frontier, cheapest first."""
    points = {(0.0, 0.0)}
    price = 1.0
    while price > 1e-6:
        acc, tok = solve(price, prompt, completion)
        points.add((round(tok, 3), acc))
        price *= 0.93
    hull: list[tuple[float, float]] = []
    for point in sorted(points):
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    return hull


def _cross(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def best_at(hull: list[tuple[float, float]], tokens: float) -> float:
    """The frontier's accuracy at `tokens` a problem (mixing the two policies around it)."""
    for (t0, a0), (t1, a1) in itertools.pairwise(hull):
        if t0 <= tokens <= t1:
            return a0 + (a1 - a0) * (tokens - t0) / (t1 - t0)
    return hull[-1][1]


def solve_fixed(n: int) -> float:
    """`best_of_n` with n samples in one request: its chance of being right (the plurality,
    ties to the most probable, which for exchangeable answers is any of them)."""
    return sum(w * answer_value(s) for w, s in after((), n))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompt", type=int, default=82, help="prompt tokens a request")
    parser.add_argument("--completion", type=int, default=83, help="tokens a reply")
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    hull = frontier(args.prompt, args.completion)
    bon3 = args.prompt + 3 * args.completion
    acc3 = solve_fixed(3)
    lines = [f"`python benchmarks/budget_bound.py {' '.join(argv)}`".replace(" `", "`"), "",
             "# The most any policy on agreement alone can reach on the fake quiz", "",
             f"A request costs {args.prompt} prompt tokens plus {args.completion} a reply; "
             f"`best_of_n n=3` (one request) costs S = {bon3} a problem and is right with "
             f"chance {acc3:.3f} ({acc3 * args.problems:.1f} of {args.problems} expected). "
             f"Policies ask for at most {MAX_SAMPLES} samples a problem, {MAX_REQUEST} a "
             "request; up to 1.0S no figure moves with a higher cap, and at 2S the figure "
             "rises by under 0.1 from a cap of 24 to 30.", "",
             "| T | tokens a problem | best expected accuracy | of "
             f"{args.problems} | against best_of_n n=3 |", "|---|---|---|---|---|"]
    for multiple in MULTIPLES:
        acc = best_at(hull, multiple * bon3)
        lines.append(f"| {multiple}S | {multiple * bon3:.0f} | {acc:.3f} | "
                     f"{acc * args.problems:.1f} | {(acc - acc3) * args.problems:+.1f} |")
    lines += ["", "Frontier (tokens a problem, accuracy):", ""]
    lines += [f"- {t:.0f}: {a:.3f}" for t, a in hull]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
