"""Judged evaluation of open-ended answers: a judge model compares an answer with a baseline's
(`pairwise_judge`: Arena-Hard, AlpacaEval 2) or rates it on a scale (`rating_judge`: MT-Bench).

A judged item may need several judge requests ("games"): Arena-Hard judges each pair in both
orders, MT-Bench's second turn is judged with the whole conversation. The engine
(engine/judging.py) asks each game as its own judgement record (`<item>@<game>`), so a killed
judging stage resumes without asking an answered game again, then calls `verdict` with the
replies. The judges' prompts are the benchmarks' own, read from the data folder (joined into
each sample's fields by the spec); their verdicts are read by the benchmarks' own patterns
(scoring/verdicts.py), from the answer part of the judge's reply only (proctor.reasoning):
a reply cut off by its token limit, holding only reasoning, or matching no pattern is
`judge_unparsed`, counted and reported, never guessed.

What the judge is shown is hostile input: the benchmarks' section markers and every
verdict-like part of the answers are defused with the same grammars that parse verdicts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

from proctor.core import Item, Message, Record, Request, Score
from proctor.errors import ConfigError, DataError
from proctor.reasoning import split_record
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.verdicts import (
    ALPACA_EVAL,
    ARENA_HARD,
    ARENA_HARD_BACKUP,
    JUDGE_SECTIONS,
    MT_BENCH_RATING,
    MT_BENCH_RATING_BACKUP,
    TRIPLE_QUOTES,
    VerdictGrammar,
)

UNPARSED = "judge_unparsed"
# Arena-Hard's verdict labels as the model's outcome when it is assistant A (show_result.py's
# `label_to_score`, strong verdicts weighted 3); as assistant B its outcome is 1 - these.
ARENA_LABELS: dict[str, float] = {"A>B": 1, "A>>B": 1, "A=B": 0.5, "A<<B": 0, "A<B": 0, "B>A": 0, "B>>A": 0,
                                  "B=A": 0.5, "B<<A": 1, "B<A": 1}
ARENA_STRONG = {"A>>B", "A<<B", "B>>A", "B<<A"}


@dataclass(frozen=True)
class Game:
    """One judge request of a judged item: its key (`<item id>@<name>`) and the request."""

    name: str
    request: Request
    meta: Mapping[str, Any] = field(default_factory=dict)


def reply_answer(reply: Record, *, one_token: bool = False) -> tuple[str | None, str]:
    """(the answer part of a judge reply, or None when it has none, and why not). `one_token`: the
    verdict is the first token (AlpacaEval asks with max_tokens 1), so an answer the limit ended
    is whole; a thought the limit cut off is still no answer."""
    split = split_record(reply)
    if split.answer is None or (split.length and not one_token):
        return None, "the judge's reply was cut off by its token limit" if split.length or split.truncated \
            else "the judge's reply holds only reasoning"
    return split.answer, ""


def first_verdict(text: str, grammars: tuple[VerdictGrammar, ...], last: bool) -> str | None:
    """The verdict of the first grammar that finds one (the benchmark's pattern, then its backup):
    the last match (Arena-Hard's get_score) or the first (FastChat's re.search)."""
    for grammar in grammars:
        found = grammar.verdicts(text)
        if found:
            return found[-1] if last else found[0]
    return None


def _defused(text: str, grammars: tuple[VerdictGrammar, ...]) -> str:
    for grammar in grammars:
        text = grammar.defuse(text)
    return text


def fill(template: str, values: Mapping[str, str]) -> str:
    """The template with each `{name}` of `values` substituted in ONE pass (a text holding
    `{answer_b}` is never substituted into); other braces are left as they are."""
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in sorted(values, key=len, reverse=True)))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


def chatml_messages(text: str) -> tuple[Message, ...]:
    """A ChatML-style prompt file (`<|im_start|>role ... <|im_end|>`, AlpacaEval's) as chat
    messages, split as alpaca_eval's `prompt_to_chatml` does."""
    text = text.strip()
    if not text.startswith("<|im_start|>") or not text.endswith("<|im_end|>"):
        raise DataError("the judge prompt is not ChatML (<|im_start|>role ... <|im_end|>)")
    messages = []
    for part in text.split("<|im_start|>")[1:]:
        head, _, rest = part.partition("\n")
        role = head.strip()
        if role not in ("system", "user", "assistant"):
            raise DataError(f"the judge prompt has a message of role {role!r}")
        messages.append(Message(role, rest.split("<|im_end|>", 1)[0].strip()))  # type: ignore[arg-type]
    return tuple(messages)


def _text_field(item: Item, name: str) -> str:
    value = item.sample.fields.get(name)
    if not isinstance(value, str):
        raise DataError(f"sample {item.sample_id}: field {name!r} must be a text (the judge needs it), "
                        f"got {type(value).__name__}")
    return value


def logprob_preference(pairs: Any, model_is: str) -> float | None:
    """AlpacaEval's weighted preference for the model from the judge's first-token log-probs:
    P(model's identifier) / (P(m) + P(M)), as alpaca_eval's logprob_parser (is_binarize false)
    computes it, a missing one of the two counting probability 0; None when neither is there."""
    if not pairs:
        return None
    found = {str(t): float(lp) for t, lp in pairs if t in ("m", "M")}
    if not found:
        return None
    import math

    top = max(found.values())
    if not math.isfinite(top):  # both identifiers at probability 0 (-inf): exp(-inf - -inf) is NaN
        return None
    weights = {t: math.exp(found[t] - top) if t in found else 0.0 for t in ("m", "M")}
    return weights[model_is] / (weights["m"] + weights["M"])


class _GameJudge(BaseScorer):
    """What the judged scorers share: a judge is needed; no gold answer is."""

    needs_judge: ClassVar[bool] = True
    needs_answer: ClassVar[bool] = False
    games_protocol: ClassVar[bool] = True

    def score(self, sample: Any, record: Record) -> Score:
        raise ConfigError(f"the {self.name} scorer needs a judge model: pass --judge-api-base URL or "
                          "--judge-model PRESET (or `judge:` in the config)")


@register
@dataclass(frozen=True)
class PairwiseJudge(_GameJudge):
    """The model's answer against a baseline's, by a judge.

    `protocol`: `arena_hard` (each pair judged twice, the baseline as assistant A then as B;
    `[[A>>B]]`..`[[B>>A]]` by the config's patterns, the last match; strong verdicts count
    `weight` battles; a question with an unparsed game is dropped, as show_result.py does) or
    `alpaca_eval` (one game, the model's output shown first or second by a draw seeded on the
    instruction as alpaca_eval's RandomSwitchTwoColumnsProcessor draws it; the judge answers `m`
    or `M`). The judge's prompt comes from the sample's `template_field` (joined from the data
    folder); Arena-Hard's system prompt (upstream code, not in its data) from `system_prompts`
    by the sample's `category_field`, else `system_prompt`.
    """

    name: ClassVar[str] = "pairwise_judge"
    reads: ClassVar[str] = "judged by a model against a baseline"
    revision: ClassVar[int] = 1
    protocol: Literal["arena_hard", "alpaca_eval"] = "arena_hard"
    baseline_field: str = "baseline"
    baseline_model: str = ""
    template_field: str = "judge_template"
    patterns_field: str = "judge_patterns"
    system_prompt: str = ""
    system_prompts: dict = field(default_factory=dict)
    category_field: str = "category"
    judge_max_tokens: int = 4096
    judge_temperature: float = 0.0
    weight: int = 3
    seed: int = 123
    suggested_judge: str = ""
    # AlpacaEval: ask for the first token's log-probabilities (its weighted judge's top_logprobs 5)
    # and read the preference from them where the judge's API returns them.
    judge_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ConfigError("pairwise_judge: weight must be at least 1")

    # -- the games ---------------------------------------------------------------------------
    def games(self, item: Item, records: Mapping[str, Record]) -> list[Game]:
        answer = records[item.id].output or ""
        baseline = _text_field(item, self.baseline_field)
        if self.protocol == "alpaca_eval":
            return [self._alpaca_game(item, answer, baseline)]
        self._check_patterns(item)
        return [self._arena_game(item, "g1", baseline, answer, model_is="B"),
                self._arena_game(item, "g2", answer, baseline, model_is="A")]

    def _request(self, messages: tuple[Message, ...]) -> Request:
        return Request(kind="generate", messages=messages, max_tokens=self.judge_max_tokens,
                       temperature=self.judge_temperature,
                       top_logprobs=self.judge_logprobs if self.protocol == "alpaca_eval" else 0)

    def _arena_game(self, item: Item, name: str, a: str, b: str, *, model_is: str) -> Game:
        shown = (JUDGE_SECTIONS, ARENA_HARD)
        category = item.sample.fields.get(self.category_field)
        system = self.system_prompts.get(category, self.system_prompt) if isinstance(category, str) else self.system_prompt
        user = fill(_text_field(item, self.template_field), {
            "QUESTION": JUDGE_SECTIONS.defuse(item.sample.question),
            "ANSWER_A": _defused(a, shown), "ANSWER_B": _defused(b, shown)})
        messages = ((Message("system", system),) if system else ()) + (Message("user", user),)
        return Game(name, self._request(messages), {"model_is": model_is})

    def _check_patterns(self, item: Item) -> None:
        """The benchmark's verdict patterns are those the grammars implement (a changed config is
        refused rather than read with other patterns)."""
        patterns = item.sample.fields.get(self.patterns_field)
        if patterns is None:
            return
        want = [ARENA_HARD.pattern, ARENA_HARD_BACKUP.pattern]
        if list(patterns) != want:
            raise DataError(f"sample {item.sample_id}: the judge config's regex_patterns {patterns!r} are not "
                            f"Arena-Hard's {want!r}; Proctor reads verdicts with those only")

    def switched(self, instruction: str) -> bool:
        """AlpacaEval's position draw: True shows the model's output first (as `m`)."""
        return random.Random(f"is_switched_outputs{instruction}{self.seed}").choices([False, True], k=1)[0]

    def _alpaca_game(self, item: Item, answer: str, baseline: str) -> Game:
        shown = (TRIPLE_QUOTES, ALPACA_EVAL)
        switched = self.switched(item.sample.question)
        first, second = (answer, baseline) if switched else (baseline, answer)
        values = {"instruction": TRIPLE_QUOTES.defuse(item.sample.question),
                  "output_1": _defused(first, shown), "output_2": _defused(second, shown)}
        messages = tuple(Message(m.role, fill(m.content, values))
                         for m in chatml_messages(_text_field(item, self.template_field)))
        return Game("g1", self._request(messages), {"model_is": "m" if switched else "M"})

    # -- the verdict -------------------------------------------------------------------------
    def verdict(self, item: Item, records: Mapping[str, Record], replies: Mapping[str, Record]) -> Score:
        games = self.games(item, records)
        answer = records[item.id].output or ""
        baseline = _text_field(item, self.baseline_field)
        extra: dict[str, Any] = {"lengths": [len(answer), len(baseline)], "protocol": self.protocol}
        shown: list[dict[str, Any]] = []
        outcomes: list[float] = []
        unparsed = 0
        for game in games:
            text, why = reply_answer(replies[game.name], one_token=self.protocol == "alpaca_eval")
            label = None
            weighted = None
            if text is not None:
                if self.protocol == "alpaca_eval":
                    label = first_verdict(text, (ALPACA_EVAL,), last=True)
                    weighted = logprob_preference(replies[game.name].top_logprobs, game.meta["model_is"])
                else:
                    label = first_verdict(text, (ARENA_HARD, ARENA_HARD_BACKUP), last=True)
                    label = label if label in ARENA_LABELS else None
                why = why or "no verdict matched the benchmark's pattern"
            entry: dict[str, Any] = {"game": game.name, "model_is": game.meta["model_is"], "verdict": label,
                                     "reply": (text or "")[-1000:]}
            if weighted is not None:  # the judge's log-probabilities of m and M: a weighted preference
                entry["verdict"] = label or "logprobs"
                entry["preference"] = weighted
                outcomes.append(weighted)
            elif label is None:
                unparsed += 1
                entry["unparsed"] = why
            else:
                outcomes += self._outcomes(label, game.meta["model_is"])
            shown.append(entry)
        extra["games"] = shown
        labels = " ".join(f"{g['game']}:{g['verdict']}" for g in shown)
        if unparsed:
            # Arena-Hard drops a question with an unparsed game; AlpacaEval has only the one.
            extra["unparsed_games"] = unparsed
            return Score(0.0, answer=labels, rule=UNPARSED, explanation=shown[0].get("unparsed") or
                         next(g["unparsed"] for g in shown if "unparsed" in g), extra=extra)
        extra["battles"] = outcomes
        value = sum(outcomes) / len(outcomes)
        return Score(value, answer=labels, rule="judge_pair", explanation=f"model's share of the battles: {value:g}",
                     extra=extra)

    def _outcomes(self, label: str, model_is: str) -> list[float]:
        """The model's battle outcomes of one game (1 win, 0.5 tie, 0 loss)."""
        if self.protocol == "alpaca_eval":
            return [1.0 if label == model_is else 0.0]
        base = ARENA_LABELS[label]
        count = self.weight if label in ARENA_STRONG else 1
        return [base if model_is == "A" else 1.0 - base] * count


@register
@dataclass(frozen=True)
class RatingJudge(_GameJudge):
    """MT-Bench single-answer grading: the judge rates each turn's answer 1-10 (`[[rating]]`,
    FastChat's pattern and its backup, the first match), with the reference answer for the
    categories that have one (`reference_categories`), the second turn with the whole
    conversation. Prompts by name from the sample's fields `<prefix>_system` / `<prefix>_template`
    for prefixes `single`, `single_math`, `multi`, `multi_math` (joined from judge_prompts.jsonl).
    A rating outside 1-10 is unparsed."""

    name: ClassVar[str] = "rating_judge"
    reads: ClassVar[str] = "rated by a judge model"
    revision: ClassVar[int] = 1
    category_field: str = "category"
    reference_field: str = "reference_turns"
    reference_categories: list = field(default_factory=lambda: ["math", "reasoning", "coding"])
    prompt_field_prefix: str = "judge_"
    judge_max_tokens: int = 2048
    judge_temperature: float = 0.0
    suggested_judge: str = ""

    def _prompt(self, item: Item, kind: str) -> tuple[str, str]:
        p = f"{self.prompt_field_prefix}{kind}"
        return _text_field(item, f"{p}_system"), _text_field(item, f"{p}_template")

    def games(self, item: Item, records: Mapping[str, Record]) -> list[Game]:
        turn = int(item.variant.get("turn", 1))
        category = item.sample.fields.get(self.category_field)
        refs = item.sample.fields.get(self.reference_field)
        math = category in self.reference_categories and isinstance(refs, list) and len(refs) >= turn
        shown = (JUDGE_SECTIONS, MT_BENCH_RATING)
        turns = item.sample.fields.get("turns") or [item.sample.question]
        answers = []
        for t in range(1, turn + 1):
            record = records.get(f"{item.sample_id}#t{t}") if turn > 1 else records[item.id]
            if record is None:  # an earlier turn without an answer (a run before that was refused)
                return []
            answers.append(_defused(record.output or "", shown))
        values: dict[str, str] = {}
        if turn == 1:
            system, template = self._prompt(item, "single_math" if math else "single")
            values = {"question": JUDGE_SECTIONS.defuse(str(turns[0])), "answer": answers[0]}
            if math:
                values["ref_answer_1"] = JUDGE_SECTIONS.defuse(str(refs[0]))  # type: ignore[index]
        else:
            system, template = self._prompt(item, "multi_math" if math else "multi")
            for t in range(1, turn + 1):
                values[f"question_{t}"] = JUDGE_SECTIONS.defuse(str(turns[t - 1]))
                values[f"answer_{t}"] = answers[t - 1]
                if math:
                    values[f"ref_answer_{t}"] = JUDGE_SECTIONS.defuse(str(refs[t - 1]))  # type: ignore[index]
        messages = (Message("system", system), Message("user", fill(template, values)))
        request = Request(kind="generate", messages=messages, max_tokens=self.judge_max_tokens,
                          temperature=self.judge_temperature)
        return [Game("r", request, {"reference": math})]

    def verdict(self, item: Item, records: Mapping[str, Record], replies: Mapping[str, Record]) -> Score:
        games = self.games(item, records)
        if not games:
            return Score(0.0, answer=None, rule="no_answer",
                         explanation="an earlier turn has no answer: this turn is not judged")
        (game,) = games
        text, why = reply_answer(replies[game.name])
        extra: dict[str, Any] = {"turn": int(item.variant.get("turn", 1)), "reference": game.meta["reference"],
                                 "judge_reply": (text or "")[-1000:]}
        if text is None:
            return Score(0.0, answer=None, rule=UNPARSED, explanation=why, extra=extra)
        found = first_verdict(text, (MT_BENCH_RATING, MT_BENCH_RATING_BACKUP), last=False)
        rating = float(found) if found is not None else None
        if rating is None or not 1 <= rating <= 10:
            shown = "no [[rating]]" if rating is None else f"a rating of {found}, outside 1-10"
            return Score(0.0, answer=found, rule=UNPARSED, explanation=f"the judge gave {shown}", extra=extra)
        extra["rating"] = rating
        return Score(rating / 10, answer=rating, rule="judge_rating", explanation=f"judge: [[{found}]]", extra=extra)


def prompt_digest(scorer: Any, samples: Any) -> str:
    """A hash of every judge prompt text a games judge uses on these samples (the fields it reads
    them from, its system prompts): the judge's prompt template hash for the manifest and version."""
    import hashlib
    import json

    names = [n for n in (getattr(scorer, "template_field", None), getattr(scorer, "patterns_field", None)) if n]
    prefix = getattr(scorer, "prompt_field_prefix", None)
    texts: set[str] = set()
    for sample in samples:
        for key, value in sample.fields.items():
            if key in names or (prefix and key.startswith(prefix)):
                texts.add(json.dumps([key, value], sort_keys=True, ensure_ascii=False))
    own = [getattr(scorer, "system_prompt", ""), getattr(scorer, "system_prompts", {})]
    blob = json.dumps([sorted(texts), own], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def games_judge(scorer: Any) -> bool:
    """True for a scorer whose items are judged as games (engine/judging.py)."""
    return bool(getattr(scorer, "games_protocol", False))
