"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injected faults.

It speaks enough of the API for any OpenAI client: `POST /v1/chat/completions` (with `n`,
`max_tokens`, `stop`, `usage`, and `logprobs` / `top_logprobs`), `GET /v1/models`, and vLLM's
`POST /tokenize`. A token is a whitespace-separated word, so tests can reason about usage (and
log-probs, see `token_logprobs`) exactly. Faults ("429", "500", "hang", "drop", "malformed")
are drawn per chat request from a seeded RNG.

>>> with FakeOpenAIServer(fault_rate=0.2, seed=1) as server:  # doctest: +SKIP
...     ponder.solve("What is 2 + 3?", backend=server.base_url)

As a process (prints the base URL on one line, serves until SIGTERM or SIGINT):

    python -m ponder.testing.fake_server --port 0 --latency 0.05 --fault-rate 0.1 --seed 1

(`--exit-with-parent` stops it when the process that started it is gone.)

Quiz mode (`quiz=[QuizItem(...)]`, `FakeOpenAIServer.from_quiz_file(path)`, or
`--quiz FILE.jsonl`) stands in for a model of known skill: each item says a problem's answer
and the chance `p_correct` that a reply gets it right, so accuracy-vs-tokens curves and
allocation can be measured without a real model's noise. See `Quiz`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ponder.backends.scripted import apply_stop
from ponder.core.answers import canonical_number

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "hang", "drop", "malformed")
LOGPROBS_MODES = ("serve", "refuse", "ignore")
# Tokens the fake charges around the messages, as a chat template would (role markers, a
# generation prompt). Kept below ponder.core.tokens' upper bound, which budgets rely on.
PER_MESSAGE_OVERHEAD = 4
PER_PROMPT_OVERHEAD = 3

Reply = Callable[[list[dict[str, Any]]], str]
StatusFor = Callable[[dict[str, Any]], int | None]


def count_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """The prompt tokens the fake charges: each message's words plus a fixed overhead."""
    words = sum(len(_content(m).split()) for m in messages)
    return words + PER_MESSAGE_OVERHEAD * len(messages) + PER_PROMPT_OVERHEAD


def token_logprobs(word: str, top_logprobs: int, *, lift: float = 0.0) -> dict[str, Any]:
    """The log-probs the fake gives one word, in OpenAI's shape: the word has probability
    0.5-0.99 (from its hash) and ranks first; `top_logprobs` candidates follow it, the rest
    of the probability halving down the ranks. `lift` (in [0, 1)) moves the word's
    probability that share of the way to 1 (quiz mode's surer right replies)."""
    p = 0.5 + (zlib.crc32(word.encode()) % 50) / 100
    p += lift * (1 - p)
    probs = [p, *((1 - p) / 2 ** (i + 1) for i in range(max(top_logprobs - 1, 0)))]
    names = [word, *(f"{word}~{i}" for i in range(1, len(probs)))]
    top = [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())}
           for t, q in zip(names, probs, strict=True)][:top_logprobs]
    return {"token": word, "logprob": math.log(p), "bytes": list(word.encode()),
            "top_logprobs": top}


def default_reply(messages: list[dict[str, Any]]) -> str:
    """A deterministic reply: the sum of the numbers in the last user message, as a final
    answer (so "Tom has 3 apples and buys 5 more" gets 8)."""
    last = next((_content(m) for m in reversed(messages) if m.get("role") == "user"), "")
    numbers = [int(x) for x in re.findall(r"-?\d+", last)]
    if not numbers:
        return "There are no numbers to work with.\nFinal answer: 0"
    terms, total = " + ".join(str(x) for x in numbers), sum(numbers)
    return f"Adding the numbers in the question: {terms} = {total}.\nFinal answer: {total}"


# -- quiz mode: a model of known skill -------------------------------------------------------

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
        asks = [_squash(_content(m)) for m in messages if m.get("role") == "system"]
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
            text = _squash(_content(message))
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
            rng.choices(wrong, weights=[0.5 ** k for k in range(len(wrong))])[0]
        words = _filler(rng)
        return QuizDraw(_program_reply(words, answer) if program else _prose_reply(words, answer),
                        right, answer)


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


class FakeOpenAIServer:
    """A real HTTP server in a background thread; one thread per connection, keep-alive.

    `status_for(body)` may return an HTTP status to answer a chat request with instead (an
    OpenAI-shaped error body); `api_key` makes the server answer 401 to any other key; an
    unknown model gets 404, and `max_context` a 400 when prompt + `max_tokens` exceed it.
    `logprobs` says what a request for log-probs gets: "serve" (per word, `token_logprobs`),
    "refuse" (a 400 naming them, as some servers answer) or "ignore" (`logprobs: null`).
    `received` keeps every chat request body, for tests to inspect.

    `quiz` (items or mappings of `QuizItem`'s fields) turns on quiz mode: a request about a
    quiz problem gets replies right with the item's `p_correct`, else one of `distractors`
    wrong answers (see `Quiz`; `from_quiz_file` reads the items from JSONL); other requests
    get `reply` as before. Log-probs are served as for any reply, except that a right quiz
    reply's words are surer by `quiz_confidence` (`token_logprobs`'s `lift`; 0 by default,
    when confidence says nothing about rightness). Usage is counted the same way in quiz mode.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        reply: Reply | None = None,
        native_n: bool = True,
        include_usage: bool = True,
        hang_s: float = 30.0,
        retry_after_s: float | None = 0.05,
        model: str = "fake-model",
        api_key: str | None = None,
        max_context: int | None = None,
        status_for: StatusFor | None = None,
        logprobs: Literal["serve", "refuse", "ignore"] = "serve",
        port: int = 0,
        quiz: Iterable[QuizItem | Mapping[str, Any]] | None = None,
        distractors: int = DEFAULT_DISTRACTORS,
        quiz_confidence: float = 0.0,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {list(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must lie in [0, 1], got {fault_rate}")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        if logprobs not in LOGPROBS_MODES:
            raise ValueError(f"logprobs must be one of {list(LOGPROBS_MODES)}, got {logprobs!r}")
        if not 0.0 <= quiz_confidence < 1.0:
            raise ValueError(f"quiz_confidence must lie in [0, 1), got {quiz_confidence}")
        self.quiz = Quiz(quiz, seed=seed, distractors=distractors) if quiz is not None else None
        self.quiz_confidence = quiz_confidence
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.reply = reply or default_reply
        self.native_n = native_n
        self.include_usage = include_usage
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.model = model
        self.api_key = api_key
        self.max_context = max_context
        self.status_for = status_for
        self.logprobs = logprobs
        self.faults_injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.received: list[dict[str, Any]] = []
        self._served = {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0}
        self._port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_quiz_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> FakeOpenAIServer:
        """A server in quiz mode on the items of a JSONL file (`QuizItem.load_jsonl`, which
        raises `QuizFileError` naming each bad line and field)."""
        return cls(quiz=QuizItem.load_jsonl(path), **kwargs)

    @property
    def requests(self) -> int:
        """Chat requests received so far, faulted ones included."""
        with self._lock:
            return self._requests

    @property
    def usage_served(self) -> dict[str, int]:
        """What the successful chat replies so far charged: `prompt_tokens` and
        `completion_tokens` summed over them, and how many `replies` (each one request,
        whatever its `n`); faulted and refused requests charge nothing."""
        with self._lock:
            return dict(self._served)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_port}/v1"

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.01},
                                        name="fake-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a "hang" or latency
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a chat request gets ---------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        with self._lock:
            self._requests += 1
            if self.fault_rate and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
                self.faults_injected[fault] += 1
                return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _check(self, body: dict[str, Any], auth: str | None) -> tuple[int, str] | None:
        """An error status and message for a request a real server would refuse."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return 401, "Incorrect API key provided."
        if self.status_for is not None:
            status = self.status_for(body)
            if status is not None:
                return status, f"fake server answers {status} to this request"
        if body.get("model") != self.model:
            return 404, f"The model `{body.get('model')}` does not exist."
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages must be a non-empty list"
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return 400, f"n must be a positive integer, got {n!r}"
        if self.logprobs == "refuse" and (body.get("logprobs") or "top_logprobs" in body):
            return 400, "logprobs is not supported by this model"
        if self.max_context is not None:
            wanted = count_prompt_tokens(messages) + int(_max_tokens(body) or 0)
            if wanted > self.max_context:
                return 400, (f"This model's maximum context length is {self.max_context} "
                             f"tokens. However, you requested {wanted} tokens.")
        return None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = body["messages"]
        n = int(body.get("n") or 1) if self.native_n else 1
        max_tokens = _max_tokens(body)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        top_logprobs = int(body.get("top_logprobs") or 0)
        serve_logprobs = self.logprobs == "serve" and bool(body.get("logprobs"))
        drawn = self.quiz.draw(messages, n, body.get("seed")) if self.quiz is not None else None
        choices, completion_tokens = [], 0
        for i in range(n):
            if drawn is None:
                raw, lift = self.reply(messages), 0.0
            else:
                raw, lift = drawn[i].text, self.quiz_confidence if drawn[i].right else 0.0
            text, finish = apply_stop(raw, stops)
            words = text.split()
            if max_tokens is not None and len(words) > max_tokens:
                text, finish, words = " ".join(words[:max_tokens]), "length", words[:max_tokens]
            completion_tokens += len(words)
            logprobs = {"content": [token_logprobs(w, top_logprobs, lift=lift) for w in words]} \
                if serve_logprobs else None
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish, "logprobs": logprobs})
        prompt_tokens = count_prompt_tokens(messages)
        with self._lock:
            serial = self._requests
            self._served["prompt_tokens"] += prompt_tokens
            self._served["completion_tokens"] += completion_tokens
            self._served["replies"] += 1
        reply: dict[str, Any] = {
            "id": f"chatcmpl-fake-{serial}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model, "choices": choices,
        }
        if self.include_usage:
            reply["usage"] = {"prompt_tokens": prompt_tokens,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}
        return reply


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handlers may wait on idle clients; never join them
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 fake: FakeOpenAIServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
    # Headers and body go out in two writes; with Nagle on, the body would wait for the
    # client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    server: _HTTPServer
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": fake.model, "object": "model", "created": 0, "owned_by": "ponder"}]})
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        body = self._read_json()
        if body is None:
            return
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            self._chat(body)
        elif path in ("/tokenize", "/v1/tokenize"):
            self._tokenize(body)
        else:
            self._error(404, f"no route POST {self.path}")

    def _chat(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        fault = fake._draw_fault()
        fake._sleep(fake.latency_s)
        if fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "hang":
            fake._sleep(fake.hang_s)
        if fault == "429":
            headers = {}
            if fake.retry_after_s is not None:
                headers["Retry-After"] = f"{fake.retry_after_s:g}"
            self._error(429, "Rate limit reached; retry later.", headers)
            return
        if fault == "500":
            self._error(500, "Internal server error (injected).")
            return
        if fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
            return
        refused = fake._check(body, self.headers.get("Authorization"))
        if refused is not None:
            self._error(*refused)
            return
        with fake._lock:
            fake.received.append(body)
        self._json(200, fake._completion(body))

    def _tokenize(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if isinstance(messages, list):
            words = [w for m in messages for w in _content(m).split()]
            count = count_prompt_tokens(messages)
        elif isinstance(body.get("prompt"), str):
            words = body["prompt"].split()
            count = len(words)
        else:
            self._error(400, "tokenize needs 'messages' or 'prompt'")
            return
        # Ids for the words, then fixed ids standing for the template's overhead tokens.
        tokens = [zlib.crc32(w.encode()) % 50_000 for w in words]
        tokens += [50_000] * (count - len(tokens))
        self._json(200, {"count": count, "max_model_len": self.server.fake.max_context or 32768,
                         "tokens": tokens})

    # -- plumbing ---------------------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "request body is not valid JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "request body must be a JSON object")
            return None
        return body

    def _json(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "code": status}},
                   headers)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout during a "hang"); nothing to tell it
            self.close_connection = True


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # the multi-part form: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ponder.testing.fake_server",
                                     description="Serve a fake OpenAI-compatible API.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a 'hang' lasts")
    parser.add_argument("--retry-after", type=float, default=0.05)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--no-native-n", action="store_true", help="always return one choice")
    parser.add_argument("--no-usage", action="store_true", help="omit usage from replies")
    parser.add_argument("--logprobs", choices=LOGPROBS_MODES, default="serve",
                        help="what a request for log-probs gets")
    parser.add_argument("--quiz", metavar="FILE.jsonl",
                        help="quiz mode: items {problem, answer, p_correct} a line")
    parser.add_argument("--distractors", type=int, default=DEFAULT_DISTRACTORS,
                        help="wrong answers per quiz problem")
    parser.add_argument("--quiz-confidence", type=float, default=0.0,
                        help="how much surer a right quiz reply's log-probs are, in [0, 1)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends (no leaked "
                             "servers when a benchmark is killed)")
    args = parser.parse_args(argv)
    parent = os.getppid()
    try:
        quiz = QuizItem.load_jsonl(args.quiz) if args.quiz else None
        server = FakeOpenAIServer(
            latency_s=args.latency, fault_rate=args.fault_rate,
            faults=[f for f in args.faults.split(",") if f], seed=args.seed,
            native_n=not args.no_native_n, include_usage=not args.no_usage, hang_s=args.hang,
            retry_after_s=args.retry_after, model=args.model, logprobs=args.logprobs,
            port=args.port, quiz=quiz, distractors=args.distractors,
            quiz_confidence=args.quiz_confidence,
        )
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        sys.stdout.write(server.base_url + "\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break


if __name__ == "__main__":
    main()
