"""`llm_judge`: a model grades the candidate, optionally against the reference answer.

Bound to a run (ponder does this), the judge's call goes through the run's `ModelAccess`, so
its tokens are charged to the problem's budget and it appears in the trace; outside one it
needs a backend of its own. The template (`llm_judge/judge.j2`, overridable) asks for a
`Feedback:` line and a `Score:`; the score is read with `ponder.core.replies.parse_rating`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ponder.backends.base import Backend
from ponder.core.errors import ConfigError
from ponder.core.replies import parse_rating
from ponder.core.types import Candidate, Problem, Verdict
from ponder.prompts import PromptLibrary
from ponder.verifiers.base import ModelAccess, Verifier

_FEEDBACK = re.compile(r"feedback\s*\**\s*:\s*\**\s*(.+?)(?=\n[^\n]*score\s*\**\s*[:=]|\Z)",
                       re.IGNORECASE | re.DOTALL)


class LLMJudge(Verifier):
    """Asks a model to grade the candidate on a 0–`scale` scale; passes at `threshold`.

    >>> judge = LLMJudge(threshold=0.7)           # inside ponder.solve: the run's backend
    >>> judge = LLMJudge(backend=OpenAIBackend())  # standalone, e.g. with ponder.verify
    """

    name = "llm_judge"

    def __init__(self, *, backend: Backend | None = None, template: str = "llm_judge/judge",
                 max_tokens: int = 256, temperature: float = 0.0, threshold: float = 0.7,
                 scale: int = 10, use_reference: bool = True, criteria: str | None = None,
                 prompts: PromptLibrary | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"llm_judge threshold must lie in [0, 1], got {threshold}")
        if scale <= 0 or max_tokens <= 0:
            raise ConfigError(f"llm_judge needs a positive scale and max_tokens, got {scale} "
                              f"and {max_tokens}")
        self.backend = backend
        self.template = template
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.threshold = threshold
        self.scale = scale
        self.use_reference = use_reference
        self.criteria = criteria
        self.prompts = prompts
        self.model: ModelAccess | None = None

    def bind(self, model: ModelAccess) -> LLMJudge:
        bound = copy.copy(self)
        bound.model = model
        return bound

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        reference = problem.answer if self.use_reference else None
        variables: dict[str, Any] = {"response": candidate.text, "reference": reference,
                                     "criteria": self.criteria, "scale": self.scale}
        if self.model is not None:
            completions = await self.model.generate(
                self.template, max_tokens=self.max_tokens, temperature=self.temperature,
                step="llm_judge", backend=self.backend, **variables,
            )
        elif self.backend is not None:
            messages = (self.prompts or PromptLibrary()).render(
                self.template, problem=problem.problem, entry_point=problem.entry_point,
                **variables,
            )
            completions = await self.backend.generate(
                messages, n=1, max_tokens=self.max_tokens, temperature=self.temperature,
            )
        else:
            raise ConfigError("llm_judge needs a model: use it inside ponder.solve (it then uses "
                              "the run's backend and budget) or give LLMJudge(backend=...)")
        reply = completions[0].text if completions else ""
        return self.judge_reply(reply, reference)

    def judge_reply(self, reply: str, reference: str | None = None) -> Verdict:
        """The verdict a judge's reply gives; its feedback never quotes `reference`."""
        score = parse_rating(reply, scale=self.scale)
        feedback = _redact(_feedback(reply), reference)
        details: dict[str, Any] = {"judge_reply": reply[:2000], "score_parsed": score is not None}
        if score is None:
            return Verdict(passed=False, score=0.0, feedback=feedback, details=details)
        return Verdict(passed=score >= self.threshold, score=score, feedback=feedback,
                       details=details)

    def __repr__(self) -> str:
        return f"LLMJudge(template={self.template!r}, threshold={self.threshold})"


def _feedback(reply: str) -> str:
    match = _FEEDBACK.search(reply)
    text = match.group(1) if match else re.sub(r"(?im)^.*score\s*[:=].*$", "", reply)
    text = text.strip().strip("*").strip()
    if text.lower().rstrip(".") in ("none", "n/a", "nothing"):
        return ""
    return text if len(text) <= 800 else text[:799] + "…"


def _redact(text: str, reference: str | None) -> str:
    """Refine prompts carry this feedback to the solver, which must not see the gold."""
    if not reference or not reference.strip():
        return text
    return re.sub(rf"(?<!\w){re.escape(reference.strip())}(?!\w)", "[the reference answer]",
                  text)
