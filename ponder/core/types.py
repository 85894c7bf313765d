"""The data that crosses ponder's boundaries, as pydantic models."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class Usage(BaseModel):
    """Tokens and calls, as the backend reported them (or estimated, and then marked).

    `cached_prompt_tokens` are those of `prompt_tokens` the server said it served from its
    prefix cache (OpenAI's `prompt_tokens_details.cached_tokens`, vLLM's, llama.cpp's
    `timings.cache_n`): a report of what a cache saved, not a discount. Budgets charge every
    prompt token, cached or not. 0 where the server says nothing, as in rows written before
    ponder recorded it; the results file's key is `cached_prompt_tokens`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    estimated: bool = False
    cached_prompt_tokens: int = 0

    @model_validator(mode="after")
    def _cached_within_prompt(self) -> Self:
        # A count of cached tokens outside [0, prompt_tokens] (a hand-edited row, a server's
        # slip) could make a share above 100%: it is held to what the prompt could have had.
        cached = min(max(0, self.cached_prompt_tokens), max(0, self.prompt_tokens))
        if cached != self.cached_prompt_tokens:
            self.cached_prompt_tokens = cached
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
            estimated=self.estimated or other.estimated,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
        )


class Confidence(BaseModel):
    """How sure the model was of one reply, from its token log-probabilities (DeepConf, Fu et
    al. 2025), as `ponder.core.confidence.summarize` makes it. Only this summary is kept: the
    per-token lists would swell every trace.

    A token's confidence, with `measure` "top_k", is minus the mean log-prob of the k most
    likely tokens at its position (DeepConf's: a peaked distribution scores high); with
    "sampled", where the server gave only the chosen token's log-prob, that log-prob itself.
    Higher is surer under both, but their scales differ, so only summaries of one measure
    are compared.
    """

    model_config = ConfigDict(frozen=True)

    measure: Literal["top_k", "sampled"]
    tokens: int = Field(ge=1, description="tokens the summary covers")
    window: int = Field(ge=1, description="tokens per group for `lowest_group`")
    mean_logprob: float = Field(le=0.0, description="mean log-prob of the sampled tokens")
    mean: float = Field(description="mean token confidence")
    lowest_group: float = Field(
        description="lowest mean token confidence over `window` consecutive tokens (the "
                    "whole reply when shorter): DeepConf's lowest group confidence")


class Completion(BaseModel):
    """One sampled reply from a backend, with the usage it cost, and how sure the model was of
    it where the backend returned token log-probabilities."""

    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    retries: int = 0
    truncated: bool = False  # ponder cut a reply longer than its max_tokens could be
    confidence: Confidence | None = None

    @field_validator("text")
    @classmethod
    def _whole_text(cls, text: str) -> str:
        """A server's lone surrogate (JSON allows `\\ud800`) becomes U+FFFD: as text it could
        not be written to a results file or a trace, and the run would lose every row."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return text


class Problem(BaseModel):
    """A problem to solve. Gold fields (`answer`, `test`, `tests`) never reach a prompt;
    `tests_public` are tests whose failures the model may be shown (see `unit_tests`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = "problem"
    problem: str
    answer: str | None = None
    test: str | None = None
    entry_point: str | None = None
    tests: str | list[str] | None = None
    tests_public: str | list[str] | None = None
    verifier: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("id") is not None and not isinstance(data["id"], str):
                data["id"] = str(data["id"])
            if data.get("answer") is not None and not isinstance(data["answer"], str):
                data["answer"] = str(data["answer"])
        return data

    @property
    def is_code(self) -> bool:
        return self.entry_point is not None or any(
            t is not None for t in (self.test, self.tests, self.tests_public))


class Verdict(BaseModel):
    """A verifier's judgement. `feedback` is written for the model to read in a refine prompt."""

    passed: bool
    score: float = Field(ge=0.0, le=1.0)
    feedback: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_bool(cls, ok: bool, feedback: str = "") -> Verdict:
        return cls(passed=ok, score=1.0 if ok else 0.0, feedback=feedback)


class Candidate(BaseModel):
    """An answer a strategy is considering: the raw text, the extracted answer, its verdict."""

    text: str
    answer: str
    verdict: Verdict | None = None
    usage: Usage = Field(default_factory=Usage)
    source: str = ""  # which step or agent produced it
    confidence: Confidence | None = None  # its reply's, where the backend gave log-probs
    # The strategy set `answer` itself (what a program printed) instead of reading it from
    # `text`: verifiers judge it as it is and never read another answer out of the text.
    answer_given: bool = False

    @property
    def score(self) -> float:
        return self.verdict.score if self.verdict is not None else 0.0


class Execution(BaseModel):
    """A model-written program run in the sandbox: what it printed, and how it ended."""

    code: str
    output: str = ""
    error: str | None = None  # why it gave no answer: an exception, a timeout, no output
    exit_code: int | None = None
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class TraceEvent(BaseModel):
    """One backend call or verification, as it happened."""

    kind: Literal["generate", "verify", "execute", "note"] = "generate"
    problem_id: str = ""
    step: str = ""
    template: str | None = None
    messages: list[Message] = Field(default_factory=list)
    completions: list[Completion] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    verdict: Verdict | None = None
    latency_s: float = 0.0
    retries: int = 0
    error: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    ts: float = Field(default_factory=time.time)


StopReason = Literal[
    "done",            # the strategy ran its course
    "verified",        # the verifier passed the answer
    "no_improvement",  # self_refine: the feedback found nothing to fix
    "max_iters",       # self_refine: out of rewrites
    "consensus",       # enough samples or agents agree
    "majority",        # best_of_n: the remaining samples could not change the winner
    "max_rounds",      # ice: out of rounds
    "max_depth",       # tree_search: out of depth
    "scattered",       # auto: the answers stay scattered, so more samples would hardly settle them
    "examples_pass",   # a coding problem: its own examples (and the model's tests) pass
    "budget",          # tokens, calls or time ran out; the best answer so far is kept
    "error",           # a backend or strategy failed; see Result.error
]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)


class Outcome(BaseModel):
    """What a strategy returns: its answer, why it stopped, and details for `Result.info`.
    Made with `ctx.finish(candidate, reason, **info)`; the parts of `info` that other modules
    read are typed (`SamplingInfo`, `Selection`), the rest is the strategy's own."""

    candidate: Candidate | None
    reason: StopReason = "done"
    info: dict[str, Any] = Field(default_factory=dict)


class Result(BaseModel):
    """What solving one problem produced. `answer` is the winner; `trace` says how."""

    id: str
    answer: str | None
    text: str | None = None
    answer_given: bool = False  # the winner's `answer_given`: a scorer judges `answer` alone
    verdict: Verdict | None = None
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0
    strategy: str = "single"
    params: dict[str, Any] = Field(default_factory=dict)
    stop_reason: StopReason = "done"
    budget_exhausted: bool = False
    info: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    problem_hash: str | None = None  # of the problem it answers; a resumed run re-solves on change
    trace: list[TraceEvent] = Field(default_factory=list)

    @property
    def correct(self) -> bool | None:
        """True/False when a verifier judged the answer, None when nothing could."""
        return None if self.verdict is None else self.verdict.passed


class InfoPart(BaseModel):
    """A typed part of `Result.info`: its fields are keys of `info`, so results files keep one
    flat `info` object (files written before the part was typed read the same), and a reader
    asks for the part by type instead of for keys by string.

    `of(result)` is the part, or None where `info` lacks it: no `marker` key, or keys that do
    not hold it (a user's strategy may use a key such as `samples` for something else).
    `model_dump()` is what goes into `info`: `ctx.finish(winner, reason, **part.model_dump())`.
    """

    marker: ClassVar[str]  # the key whose presence says the part is there

    @classmethod
    def of(cls, source: Result | Outcome | Mapping[str, Any]) -> Self | None:
        info = source if isinstance(source, Mapping) else source.info
        if cls.marker not in info:
            return None
        try:
            # Strict: a value of another type (`true` for a count, "0.5" for a share) is not
            # what the part says, and its readers would misread it.
            return cls.model_validate(info, strict=True)
        except ValidationError:
            return None


class Behaviour(BaseModel):
    """What one candidate program did on a coding problem's inputs, as `ponder.code.behaviour`
    reads it from a sandbox run: enough to cluster and rank candidates again later without
    running them (`ponder bench` re-chooses smaller pools from it).

    `key` names its outputs over every input (equal outputs, equal keys); `public` says, per
    example the problem states (its public tests, or those read from its prompt), whether the
    candidate passed it, and `model` the same per test the model wrote, trusted less;
    `errors` counts inputs it raised on or hung on."""

    model_config = ConfigDict(frozen=True)

    key: str
    public: list[bool] = Field(default_factory=list)
    model: list[bool] = Field(default_factory=list)
    errors: int = 0

    @property
    def public_passed(self) -> int:
        return sum(self.public)

    @property
    def model_passed(self) -> int:
        return sum(self.model)


class PoolRecord(BaseModel):
    """One sample as a sampling strategy's `pool` keeps it: what choosing among the samples
    again needs (its answer, what it cost, its confidence), so that `ponder bench` computes a
    smaller `n` or another selector without a model call. `tokens` is all its call charged for
    it (its own prompt copy included where the backend charged one per sample), so the first k
    records' tokens are what a call for k samples would have cost."""

    answer: str
    tokens: int
    confidence: Confidence | None = None
    behaviour: Behaviour | None = None  # on a coding problem, what it did on the inputs

    @model_serializer(mode="wrap")
    def _without_absent_behaviour(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Rows keep their shape where there is no behaviour (every non-coding sample).
        data = handler(self)
        if isinstance(data, dict) and data.get("behaviour") is None:
            data.pop("behaviour", None)
        return data

    @classmethod
    def of(cls, sample: Candidate, behaviour: Behaviour | None = None) -> PoolRecord:
        return cls(answer=sample.answer, tokens=sample.usage.total_tokens,
                   confidence=sample.confidence, behaviour=behaviour)


class SamplingInfo(InfoPart):
    """What every sampling strategy (`best_of_n`, `program`, `auto`) records of its vote, as
    `ponder.strategies.sampling.vote_info` makes it. Read by the total budget's second pass
    (`votes`), `ponder serve` (`answers`, for a request's `n`), `ponder bench` (`pool`,
    `vote_answer`) and the run summary (`samples`)."""

    marker: ClassVar[str] = "samples"

    # `samples` and `vote_answer` say that a vote was taken; the rest default to nothing, as
    # rows written before ponder recorded them have it. Fields in the order `info` holds them.
    samples: int = Field(ge=0, description="samples voted")
    votes: dict[str, float] = Field(default_factory=dict,
                                    description="canonical answer -> its votes")
    answers: dict[str, str] = Field(
        default_factory=dict,
        description="canonical answer -> the answer as its first sample gave it, most votes "
                    "first (the runners-up a caller may show)")
    # What a run with no verifier to pick would have answered: with gold as the verifier the
    # result is pass@k, and this answer is the honest figure beside it.
    vote_answer: str | None
    agreement: float | None = Field(default=None, ge=0.0, le=1.0,
                                    description="the top answer's share of the votes")
    pool: list[PoolRecord] = Field(default_factory=list,
                                   description="every sample, in draw order")


class Selection(InfoPart):
    """Where a verifier chose the answer among several candidates, how: `selected_by` ("gold"
    for a verifier that reads the problem's gold, whose pick makes the result pass@k, else
    "verifier:<name>") and `vote_correct`, the same verifier's verdict on the strategy's own
    vote (None when it could not be judged). `ponder.runs.gold_selection` records it."""

    marker: ClassVar[str] = "selected_by"

    selected_by: str
    vote_correct: bool | None

    @property
    def by_gold(self) -> bool:
        return self.selected_by == "gold"
