"""Quiz mode's model of known skill: each `QuizItem` says a problem's answer and the chance
`p_correct` that a reply gets it right, and `Quiz` draws the replies, so accuracy-vs-tokens
curves and allocation can be measured without a real model's noise. The fake server answers
with one given `quiz=items`, `FakeOpenAIServer.from_quiz_file(path)` or `--quiz FILE.jsonl`."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ponder.core.answers import canonical_number
from ponder.testing.tokens import message_text

DEFAULT_DISTRACTORS = 3
MAX_DISTRACTORS = 100
FILLER_WORDS = (40, 120)
"""The words of filler reasoning before a quiz reply's answer line, at least and at most."""
# Sentences a quiz reply reasons with: no digits and no answer anchors ("answer", "boxed"),
# so that only the reply's last line answers.
_FILLER = (
    "First I read the question carefully and note every quantity it gives.",
    "Then I work out what exactly the question asks for.",
    "I set up the calculation step by step and keep track of the units.",
    "Combining these amounts gives the running total so far.",
    "Next I apply the remaining condition from the question.",
    "Let me double-check the arithmetic of each step before going on.",
    "The rate has to be multiplied by the time to get the amount.",
    "Subtracting what was used up leaves the remainder.",
    "Each part is worked out on its own and then the parts are added together.",
    "The percentage becomes a fraction before it is multiplied.",
    "Comparing this with the question, the result looks reasonable.",
    "Now I put the pieces together.",
    "It helps to write down what is known and what is still missing.",
    "The price of one item times the number of items gives the cost.",
)
# What program/write.j2 and program/repair.j2 ask for.
_PROGRAM_REQUEST = re.compile(r"python\s+program|```python\s+block", re.IGNORECASE)
_PYTHON_INT = re.compile(r"-?(?:0|[1-9]\d*)")


class QuizFileError(ValueError):
    """A quiz file that cannot be used; one line per problem, naming the file, line and field."""


class QuizItem(BaseModel):
    """One quiz problem: its text, its right answer, and the chance that a reply is right.

    Other fields (`id`, `difficulty`, …) are ignored, so a quiz file can double as a ponder
    problem file (which keeps them in `metadata`). A number as `answer` is taken as its text.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    problem: str = Field(min_length=1, description="text that occurs in the prompts")
    answer: str = Field(min_length=1, description="what a right reply answers")
    p_correct: float = Field(ge=0.0, le=1.0, allow_inf_nan=False,
                             description="the chance that one reply is right")
    distractors: int | None = Field(default=None, ge=1, le=MAX_DISTRACTORS,
                                    description="wrong answers to draw from (else the quiz's)")

    @field_validator("answer", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("problem", "answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @classmethod
    def load_jsonl(cls, path: str | os.PathLike[str]) -> list[QuizItem]:
        """The items of a JSONL file, one object a line (blank lines skipped). Every bad line
        is reported, as `FILE:LINE: field 'p_correct': …`, in one `QuizFileError`."""
        path = Path(path)
        items: list[QuizItem] = []
        errors: list[str] = []
        first_line: dict[str, int] = {}
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    errors.append(f"{where}: not valid JSON ({exc})")
                    continue
                if not isinstance(row, dict):
                    errors.append(f"{where}: a quiz item must be a JSON object, "
                                  f"not {type(row).__name__}")
                    continue
                try:
                    item = cls.model_validate(row)
                except ValidationError as exc:
                    for error in exc.errors():
                        field = ".".join(str(part) for part in error["loc"]) or "(item)"
                        errors.append(f"{where}: field {field!r}: {error['msg']}")
                    continue
                key = _squash(item.problem)
                if key in first_line:
                    errors.append(f"{where}: field 'problem': the same problem as line "
                                  f"{first_line[key]}")
                    continue
                first_line[key] = number
                items.append(item)
        if not items and not errors:
            errors.append(f"{path}: no quiz items")
        if errors:
            raise QuizFileError("\n".join(errors))
        return items


class QuizDraw(NamedTuple):
    """One drawn reply: its text, whether it is right, and the answer it gives."""

    text: str
    right: bool
    answer: str


class Quiz:
    """Which quiz item a chat request is about, and the replies drawn for it.
    `FakeOpenAIServer(quiz=items)` holds one, seeded with the server's seed.

    Matching: whitespace is collapsed in problems and messages alike. The last user message
    that contains some item's problem decides, and within it the longest such problem wins
    (an item whose problem is part of another's does not take that one's requests). It costs
    a substring search per item per user message, until one matches. No match: None, and
    the server answers as it would without a quiz.

    Drawing: each of a request's `n` choices has its own RNG, seeded from the server seed,
    the problem, the request's `seed` field (None when absent), the choice's index and how
    many requests for this problem came before it (a per-problem counter), so that a run is
    reproducible while repeated requests, even with one `seed`, get fresh samples. (Requests
    for one problem in flight together take counters in arrival order, so their replies may
    swap.) A choice is right with probability `p_correct`; a wrong one answers one of the
    problem's `distractors` wrong answers, the k-th (k = 0, 1, …) with weight 2^-k, so that
    wrong answers often agree, as real models' errors do (with 3: 4/7, 2/7, 1/7 of the wrong
    replies). Below p_correct ≈ 0.3 the first distractor outpolls the right answer and a vote
    settles on it, as on problems a model gets consistently wrong.

    Distractors come from the problem and answer alone, not the seed: for a number, the
    usual slips (±1, ±2, ±5, ±10, doubled, halved, tripled, ×10, ÷10), integral for an
    integral answer and non-negative for a non-negative one, in an order shuffled by the
    problem (then answer + 3, + 4, … when more are wanted); for any other answer,
    "ANSWER + 1", "ANSWER + 2", ….

    A reply is 40–120 words of filler reasoning (no digits) and then the line
    "The answer is \\boxed{ANSWER}.", which `ponder.core.answers.extract_answer` reads as ANSWER.
    A request for a Python program ("Python program" or "```python block" in a system
    message or the matched user message, outside the problem, as `program/write.j2` and
    `program/repair.j2` ask) gets the filler as comments in a ```python block that prints the
    drawn answer. Every other prompt that quotes the problem (self_refine's feedback, the
    judges, tree_search's value prompt) gets an ordinary quiz reply.
    """

    def __init__(self, items: Iterable[QuizItem | Mapping[str, Any]], *, seed: int = 0,
                 distractors: int = DEFAULT_DISTRACTORS) -> None:
        if not 1 <= distractors <= MAX_DISTRACTORS:
            raise ValueError(f"distractors must lie in [1, {MAX_DISTRACTORS}], got {distractors}")
        self.items = tuple(item if isinstance(item, QuizItem) else QuizItem.model_validate(item)
                           for item in items)
        self.seed = seed
        self.distractors = distractors
        self._keys = [_squash(item.problem) for item in self.items]
        seen: dict[str, int] = {}
        for index, key in enumerate(self._keys):
            if key in seen:
                raise ValueError(f"quiz items {seen[key]} and {index} have the same problem "
                                 f"({key[:60]!r})")
            seen[key] = index
        self._longest_first = sorted(range(len(self.items)), key=lambda i: -len(self._keys[i]))
        self._wrong = [
            wrong_answers(key, item.answer.strip(), item.distractors or distractors)
            for key, item in zip(self._keys, self.items, strict=True)]
        self._counters = [0] * len(self.items)
        self._lock = threading.Lock()
        self._stats = {"matched": 0, "unmatched": 0, "right": 0, "wrong": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Requests `matched` to an item and `unmatched`, and the `right` and `wrong` choices
        drawn for the matched ones."""
        with self._lock:
            return dict(self._stats)

    def wrong_answers(self, item: QuizItem | int) -> tuple[str, ...]:
        """An item's distractors, the most often drawn first."""
        index = item if isinstance(item, int) else self.items.index(item)
        return self._wrong[index]

    def match(self, messages: Sequence[dict[str, Any]]) -> QuizItem | None:
        """The item a request's messages are about, None for none."""
        found = self._match(messages)
        return None if found is None else self.items[found[0]]

    def draw(self, messages: Sequence[dict[str, Any]], n: int = 1,
             request_seed: Any = None) -> list[QuizDraw] | None:
        """The `n` replies to a request (advancing its problem's counter), None when its
        messages match no item."""
        found = self._match(messages)
        if found is None:
            with self._lock:
                self._stats["unmatched"] += 1
            return None
        index, user_text = found
        key = self._keys[index]
        asks = [_squash(message_text(m)) for m in messages if m.get("role") == "system"]
        asks.append(user_text.replace(key, " "))
        program = any(_PROGRAM_REQUEST.search(text) for text in asks)
        with self._lock:
            counter = self._counters[index]
            self._counters[index] += 1
        draws = [self._draw_one(index, request_seed, choice, counter, program)
                 for choice in range(n)]
        right = sum(d.right for d in draws)
        with self._lock:
            self._stats["matched"] += 1
            self._stats["right"] += right
            self._stats["wrong"] += len(draws) - right
        return draws

    def _match(self, messages: Sequence[dict[str, Any]]) -> tuple[int, str] | None:
        for message in reversed(messages):
            if message.get("role") != "user":
                continue
            text = _squash(message_text(message))
            for index in self._longest_first:
                if self._keys[index] in text:
                    return index, text
        return None

    def _draw_one(self, index: int, request_seed: Any, choice: int, counter: int,
                  program: bool) -> QuizDraw:
        item, wrong = self.items[index], self._wrong[index]
        rng = random.Random(_seed_of(self.seed, self._keys[index], request_seed, choice,
                                     counter))
        right = rng.random() < item.p_correct
        answer = item.answer.strip() if right else \
            rng.choices(wrong, weights=distractor_weights(len(wrong)))[0]
        words = _filler(rng)
        return QuizDraw(_program_reply(words, answer) if program else _prose_reply(words, answer),
                        right, answer)


def distractor_weights(count: int) -> list[float]:
    """How often each of `count` wrong answers comes up among the wrong replies, relative to
    one another: the k-th with weight 2^-k (see `Quiz`)."""
    return [0.5 ** k for k in range(count)]


def wrong_answers(problem: str, answer: str, count: int) -> tuple[str, ...]:
    """`count` distinct wrong answers to a problem, from its text and answer alone (see
    `Quiz`)."""
    number = canonical_number(answer)
    if number is None:
        return tuple(f"{answer} + {k}" for k in range(1, count + 1))
    a = Decimal(number)
    slips = [a + 1, a - 1, a + 2, a - 2, a + 5, a - 5, a + 10, a - 10, a * 2, a / 2, a * 3,
             a * 10, a / 10]
    random.Random(_seed_of("distractors", _squash(problem), number)).shuffle(slips)
    integral = a == a.to_integral_value()
    out: list[str] = []
    for value in [*slips, *(a + k for k in range(3, count + len(slips) + 3))]:
        if value == a or (a >= 0 > value) or (integral and value != value.to_integral_value()):
            continue
        text = _number_text(value)
        if text not in out:
            out.append(text)
            if len(out) == count:
                break
    return tuple(out)


def _number_text(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _seed_of(*parts: Any) -> int:
    data = json.dumps(parts, default=repr).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _squash(text: str) -> str:
    return " ".join(text.split())


def _filler(rng: random.Random) -> list[str]:
    target = rng.randint(*FILLER_WORDS)
    words: list[str] = []
    while len(words) < target:
        words.extend(rng.choice(_FILLER).split())
    words = words[:target]
    words[-1] = words[-1].rstrip(".,;-") + "."
    return words


def _prose_reply(words: list[str], answer: str) -> str:
    return " ".join(words) + "\nThe answer is \\boxed{" + answer + "}."


def _program_reply(words: list[str], answer: str) -> str:
    comments = [" ".join(["#", *words[i : i + 12]]) for i in range(0, len(words), 12)]
    literal = answer if _PYTHON_INT.fullmatch(answer) else repr(answer)
    code = "\n".join([*comments, f"answer = {literal}", "print(answer)"])
    return f"Here is the program.\n\n```python\n{code}\n```"
