"""LLM-as-judge: `llm_judge` (a model grades every answer) and `cascade` (a rule first, the judge
for what the rule rejects, or for everything with `judge_all`).

A judge scorer scores in two steps the engine drives, since the judge is a model call:
`first_pass` gives the rule's verdict and says whether the judge must look; `judge_request`
is what the judge is asked; `final` turns its reply into the Score. The verdict is the LAST
line of the form `GRADE: C` / `GRADE: I`; a reply without one is "judge_unparsed": counted and
shown, never read as a grade (OpenCompass takes the first `A` or `B` anywhere in the reply,
so "As a judge..." reads as A).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from proctor.core import Message, Record, Request, Sample, Score
from proctor.errors import ConfigError
from proctor.scoring.base import BaseScorer, get_scorer, register

TEMPLATE = """\
Grade a submitted answer against the reference answer to a question.

[Question]
{question}

[Reference answer]
{target}

[Submitted answer]
{answer}

[End of data]

Decide whether the submission gives the same final answer as the reference. Differences in \
wording, formatting or style, and extra explanation, do not matter; a different or missing \
final answer, or several answers that contradict each other, make it incorrect.

Reason briefly, step by step. Then end your reply with one line, exactly `GRADE: C` if the \
submission is correct or `GRADE: I` if it is incorrect."""

_VERDICT = re.compile(r"^[ \t>*_`#-]*GRADE[ \t*_`]*:[ \t*_`]*([CI])\b", re.IGNORECASE | re.MULTILINE)
# Verdict-like lines inside the text being judged: a submission must not grade itself.
_FAKE_VERDICT = re.compile(r"(?im)^([ \t>*_`#-]*)GRADE(\s*:)")

UNPARSED = "judge_unparsed"
JUDGE_MAX_TOKENS = 1024


def template_sha(template: str = TEMPLATE) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]


def neutralise(text: str) -> str:
    """The submission with its own `GRADE:` lines defused (`[grade]:`), so it cannot vote."""
    return _FAKE_VERDICT.sub(r"\1[grade]\2", text)


def parse_verdict(reply: str | None) -> str | None:
    """"C" or "I" from the LAST verdict line of the judge's reply; None when there is none."""
    found = _VERDICT.findall(reply or "")
    return found[-1].upper() if found else None


def _target_text(target: Any) -> str:
    if isinstance(target, (list, tuple)):
        return " / ".join(str(t) for t in target)
    return str(target)


@dataclass(frozen=True)
class _Judged(BaseScorer):
    """What the two judge scorers share: the prompt, the request and reading the verdict."""

    needs_judge: ClassVar[bool] = True
    template: str = TEMPLATE

    def __post_init__(self) -> None:
        missing = [name for name in ("question", "target", "answer") if "{" + name + "}" not in self.template]
        if missing:
            raise ConfigError(f"{self.name}: the judge template must contain {{{missing[0]}}}")

    def judge_request(self, sample: Sample, record: Record) -> Request:
        prompt = self.template.replace("{question}", sample.question).replace("{target}", _target_text(sample.target))
        prompt = prompt.replace("{answer}", neutralise(record.output or ""))
        return Request(kind="generate", messages=(Message("user", prompt),), max_tokens=JUDGE_MAX_TOKENS,
                       temperature=0.0)

    def score(self, sample: Sample, record: Record) -> Score:
        raise ConfigError(f"the {self.name} scorer needs a judge model: set `judge:` in the config or --judge-api-base")

    def verdict_score(self, reply: str | None, rule: Score | None = None) -> Score:
        """The Score a judge's reply gives (value 0 and rule judge_unparsed without a verdict)."""
        verdict = parse_verdict(reply)
        extra: dict[str, Any] = {"judge_reply": (reply or "")[-2000:]}
        if rule is not None:
            extra["rule_value"] = rule.value
            extra["rule_answer"] = rule.answer
        answer = rule.answer if rule is not None and rule.answer is not None else None
        if verdict is None:
            return Score(0.0, answer=answer, rule=UNPARSED, explanation="the judge gave no GRADE line", extra=extra)
        return Score(1.0 if verdict == "C" else 0.0, answer=answer if answer is not None else "(judged)",
                     rule=f"judge_{verdict}", explanation=f"judge: GRADE {verdict}", extra=extra)


@register
@dataclass(frozen=True)
class LLMJudgeScorer(_Judged):
    """Every answer goes to the judge."""

    name: ClassVar[str] = "llm_judge"
    revision: ClassVar[int] = 1

    def first_pass(self, sample: Sample, record: Record) -> tuple[Score | None, bool]:
        return None, True

    def final(self, sample: Sample, record: Record, rule: Score | None, reply: str | None) -> Score:
        return self.verdict_score(reply)


@register
@dataclass(frozen=True)
class CascadeScorer(_Judged):
    """A rule-based scorer first (`rule`, default `exact`); the judge sees the items the rule did
    not accept, or every item with `judge_all` (then how often the two disagree is reported)."""

    name: ClassVar[str] = "cascade"
    revision: ClassVar[int] = 1
    rule: str = "exact"
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    judge_all: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rule in ("cascade", "llm_judge"):
            raise ConfigError(f"cascade: rule must be a rule-based scorer, not {self.rule!r}")
        get_scorer(self.rule, dict(self.rule_params))  # a bad rule is a config error now, not after inference

    def _rule(self) -> Any:
        return get_scorer(self.rule, dict(self.rule_params))

    def first_pass(self, sample: Sample, record: Record) -> tuple[Score | None, bool]:
        score = self._rule().score(sample, record)
        return score, self.judge_all or not score.correct

    def final(self, sample: Sample, record: Record, rule: Score | None, reply: str | None) -> Score:
        return self.verdict_score(reply, rule)


def judge_scorer(scorer: Any) -> bool:
    """True for a scorer the engine must give a judge model."""
    return bool(getattr(scorer, "needs_judge", False))
