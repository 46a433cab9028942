"""Scoring with a judge model: the rule's first pass, the judge's requests through the same
backends, limits, retries and response cache as inference, and its replies kept on disk.

Judge replies are records of `judgements/<model>/<dataset>.j<judge tag>.jsonl` (one file per
judge: its settings, the scorer's version and prompts), keyed by the judged item:
a re-run of the eval stage asks the judge only what it has not answered with exactly this
prompt (and a deterministic judge request is also in the response cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from typing import Any, Mapping, Sequence

from proctor.config.schema import REASONING_MAX_OUT_LEN
from proctor.core import Item, Record, Request, Score
from proctor.engine.cache import ResponseCache
from proctor.engine.diskio import write_json_atomic
from proctor.engine.manifest import model_info, read_manifest
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir
from proctor.engine.store import PredictionStore
from proctor.engine.task import has_answer, run_task
from proctor.errors import ConfigError

log = logging.getLogger("proctor.engine")


def _with_budget(request: Request, budget: int | None) -> Request:
    return request if budget is None else replace(request, max_tokens=budget)


def judge_tag(judge: Any, scorer: Any, prompts: str = "") -> str:
    """A short hash of the judge's settings (no secrets), the judging scorer's version and, for a
    benchmark's own judge prompts (`prompts`: their hash), those: a score judged by another judge
    or prompt is another number, and its version column says so."""
    settings = judge.model_dump(mode="json", exclude={"api_key"}) if judge is not None else None
    if settings is not None and settings.get("system_prompt") is None:
        settings.pop("system_prompt", None)  # unset, the tag stays what it was before the setting existed
    blob = json.dumps([settings, scorer.version] + ([prompts] if prompts else []), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:4]


def _judge_settings(scorer: Any) -> dict[str, Any]:
    """What a games judge asks with besides its prompts (token budget, temperature, protocol)."""
    names = ("protocol", "judge_max_tokens", "judge_temperature", "judge_logprobs", "weight", "seed", "baseline_model")
    return {n: getattr(scorer, n) for n in names if hasattr(scorer, n)}


def _refuses_logprobs(record: Record | None) -> bool:
    """A judge request that failed because the server does not return log-probabilities."""
    error = (record.error or "") if record is not None else ""
    return "400" in error and "logprob" in error.lower()


def game_verdicts(scorer: Any, items: Sequence[Item], records: Mapping[str, Record], games: Mapping[str, Any],
                  replies: Mapping[str, Record]) -> tuple[dict[str, Score], list[Record]]:
    """(the verdict of each item whose every game has a successful reply, the replies used): an
    item with a failed or missing game is not scored (its caller counts it as failed)."""
    scores: dict[str, Score] = {}
    used: list[Record] = []
    for item in items:
        got = {g.name: replies.get(f"{item.id}@{g.name}") for g in games[item.id]}
        if all(has_answer(r) for r in got.values()):
            used += [r for r in got.values() if r is not None]
            scores[item.id] = scorer.verdict(item, records, got)
    return scores, used


class JudgeSession:
    """The judge model of one eval stage, started when the first judged dataset needs it."""

    def __init__(self, run: RunDir, config: Any, cache: ResponseCache | None) -> None:
        self.run = run
        self.config = config
        self.cache = cache
        self._backend: Any = None
        self.failed = 0  # judged items whose judge request failed (not scored)
        # Per (model, dataset): what the judge's replies cost (requests, prompt and completion tokens).
        self.costs: dict[tuple[str, str], dict[str, float]] = {}

    async def _started(self, scorer: Any = None, dataset: Any = None) -> Any:
        if self._backend is None:
            if self.config is None:
                suggested = getattr(scorer, "suggested_judge", "")
                raise ConfigError(
                    f"a dataset is scored by a judge (scorer {getattr(scorer, 'name', 'cascade or llm_judge')}) but "
                    "no judge model is set: pass --judge-api-base URL (or --judge-model PRESET, or `judge:` in "
                    "the config)" + (f"; the benchmark's own judge is {suggested}" if suggested else "")
                )
            from proctor.models import create_backend

            backend = create_backend(self.config)
            await backend.start()
            self._backend = backend
        self._record_in_manifest(scorer, dataset)
        return self._backend

    def _record_in_manifest(self, scorer: Any = None, dataset: Any = None) -> None:
        from proctor.scoring.judge import TEMPLATE, template_sha
        from proctor.scoring.judged import games_judge, prompt_digest

        manifest = read_manifest(self.run)
        info = model_info(self.config, identity=self._backend.identity, chat=self._backend.chat)
        previous = manifest.get("judge") if isinstance(manifest.get("judge"), dict) else {}
        entry = {"name": self._backend.name, **info,
                 # the llm_judge/cascade template (a games judge's prompts are under `templates`)
                 "template_sha256": previous.get("template_sha256") if games_judge(scorer)
                 else template_sha(getattr(scorer, "template", TEMPLATE))}
        # A benchmark's own judge prompts, per dataset (several judged benchmarks share one judge).
        templates = dict(previous.get("templates") or {})
        if games_judge(scorer) and dataset is not None:
            templates[dataset.config.abbr] = {"scorer": scorer.name, "prompts_sha256": prompt_digest(scorer, dataset.samples),
                                              "settings": {k: v for k, v in _judge_settings(scorer).items()}}
        if templates:
            entry["templates"] = templates
        if entry.get("template_sha256") is None:
            entry.pop("template_sha256")
        manifest["judge"] = entry
        write_json_atomic(self.run.manifest_path, manifest)

    def _store(self, model: str, dataset: PreparedDataset, scorer: Any, prompts: str = "") -> PredictionStore:
        """The judge's replies: one file per judge (settings, scorer, prompts), so a resumed run
        with another judge or template asks it everything and never reads another judge's
        verdicts (the recorded prompt alone does not tell two judges apart)."""
        path = self.run.judgements(model, dataset.config.abbr)
        return PredictionStore(path.with_name(f"{path.stem}.j{judge_tag(self.config, scorer, prompts)}.jsonl"))

    def _budget(self) -> int | None:
        """The judge's answer budget: a reasoning judge's thought needs room (a reply cut off by
        the limit gives no verdict); a max_out_len set for the judge counts when it is larger
        than the scorer's own (a benchmark-sized 256 would cut most verdicts off)."""
        from proctor.scoring.judge import JUDGE_MAX_TOKENS

        config = self.config
        if config is None:
            return None
        if "max_out_len" in config.model_fields_set:
            return max(JUDGE_MAX_TOKENS, int(config.max_out_len))
        if getattr(config, "reasoning", False):
            return REASONING_MAX_OUT_LEN
        return None

    def _game_budget(self, asked: int) -> int:
        """A games judge's answer budget: the benchmark's (`asked`), or more where the judge's
        config gives more (its max_out_len, a reasoning judge's budget)."""
        config = self.config
        reasoning = config is not None and bool(getattr(config, "reasoning", False))
        if config is not None and "max_out_len" in config.model_fields_set and (asked > 1 or reasoning):
            # A one-token verdict (AlpacaEval's) stays one token unless the judge thinks first.
            return max(asked, int(config.max_out_len))
        if reasoning:
            return max(asked, REASONING_MAX_OUT_LEN)
        return asked

    async def score_games(self, model: str, dataset: PreparedDataset, scorer: Any,
                          records: Mapping[str, Record], answered: list[Item]) -> dict[str, Score]:
        """Scores of a games judge (scoring/judged.py): each game a judgement record of its own."""
        games = {item.id: scorer.games(item, records) for item in answered}
        # A reasoning judge's first token is its thought's: no log-probs asked (reasoning APIs refuse them).
        thinks = bool(getattr(self.config, "reasoning", False))
        asked = [(Item(id=f"{item.id}@{g.name}", sample=item.sample, sample_id=item.sample_id, variant=item.variant),
                  replace(g.request, max_tokens=self._game_budget(g.request.max_tokens),
                          top_logprobs=0 if thinks else g.request.top_logprobs))
                 for item in answered for g in games[item.id]]
        replies: dict[str, Record] = {}
        if asked:
            from proctor.scoring.judged import prompt_digest

            backend = await self._started(scorer, dataset)
            store = self._store(model, dataset, scorer, prompt_digest(scorer, dataset.samples))
            try:
                markers = getattr(self.config, "reasoning_markers", None)
                stats = await run_task(backend, asked, store, store.load(), self.cache, lambda record: None,
                                       run_id=self.run.run_id, markers=markers() if markers is not None else None)
                replies = store.load()
                # A server that refuses log-probabilities (HTTP 400 naming them): its verdicts are read
                # from its tokens instead (the recorded prompt is the same, so resume keeps them).
                refused = [(item, replace(request, top_logprobs=0)) for item, request in asked
                           if request.top_logprobs and _refuses_logprobs(replies.get(item.id))]
                if refused:
                    log.warning("the judge refused log-probabilities (%s); %d verdicts of %s are read from its "
                                "tokens (scorer_params {judge_logprobs: 0} asks without them)",
                                replies[refused[0][0].id].error, len(refused), dataset.config.abbr)
                    await run_task(backend, refused, store, replies, self.cache, lambda record: None,
                                   run_id=self.run.run_id, markers=markers() if markers is not None else None)
            finally:
                store.close()
            replies = store.load()
            log.info("judge on %s/%s: %d games, sent %d, cached %d, already judged %d", model, dataset.config.abbr,
                     len(asked), stats.sent, stats.cached, stats.skipped)
        scores, used = game_verdicts(scorer, answered, records, games, replies)
        self.failed += len(answered) - len(scores)  # a judge request failed: the item is not scored
        self.costs[(model, dataset.config.abbr)] = {
            "judge_requests": float(len(used)),
            "judge_prompt_tokens": float(sum(r.prompt_tokens or 0 for r in used)),
            "judge_completion_tokens": float(sum(r.completion_tokens or 0 for r in used)),
        }
        return scores

    async def score(self, model: str, dataset: PreparedDataset, scorer: Any,
                    records: Mapping[str, Record], answered: list[Item]) -> dict[str, Score]:
        """Scores of the answered items: the rule's where it decides, the judge's elsewhere."""
        from proctor.scoring.judged import games_judge

        if games_judge(scorer):
            return await self.score_games(model, dataset, scorer, records, answered)
        first: dict[str, tuple[Score | None, bool]] = {
            item.id: scorer.first_pass(item.sample, records[item.id]) for item in answered
        }
        budget = self._budget()
        asked = [(item, _with_budget(scorer.judge_request(item.sample, records[item.id]), budget))
                 for item in answered if first[item.id][1]]
        replies: dict[str, Record] = {}
        if asked:
            backend = await self._started(scorer, dataset)
            store = self._store(model, dataset, scorer)
            try:
                # The judge's reasoning is split off like a model's: a verdict is read from its answer only.
                markers = getattr(self.config, "reasoning_markers", None)
                await run_task(backend, asked, store, store.load(), self.cache, lambda record: None,
                               run_id=self.run.run_id, markers=markers() if markers is not None else None)
            finally:
                store.close()
            replies = store.load()
        scores: dict[str, Score] = {}
        for item in answered:
            rule, needs_judge = first[item.id]
            if not needs_judge:
                assert rule is not None
                scores[item.id] = rule
                continue
            reply = replies.get(item.id)
            if not has_answer(reply):
                self.failed += 1  # the judge could not answer: the item is not scored
                continue
            assert reply is not None
            scores[item.id] = scorer.final(item.sample, records[item.id], rule, reply)
        return scores

    async def close(self) -> None:
        if self._backend is not None:
            try:
                await self._backend.close()
            except Exception as exc:  # closing must not hide the stage's own error
                log.debug("closing the judge failed: %s", exc)
