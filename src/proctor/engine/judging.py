"""Scoring with a judge model: the rule's first pass, the judge's requests through the same
backends, limits, retries and response cache as inference, and its replies kept on disk.

Judge replies are records of `judgements/<model>/<dataset>.jsonl`, keyed by the judged item:
a re-run of the eval stage asks the judge only what it has not answered with exactly this
prompt (and a deterministic judge request is also in the response cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from typing import Any, Mapping

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


def judge_tag(judge: Any, scorer: Any) -> str:
    """A short hash of the judge's settings (no secrets) and the judging scorer's version: a
    score judged by another judge or prompt is another number, and its version column says so."""
    settings = judge.model_dump(mode="json", exclude={"api_key"}) if judge is not None else None
    if settings is not None and settings.get("system_prompt") is None:
        settings.pop("system_prompt", None)  # unset, the tag stays what it was before the setting existed
    blob = json.dumps([settings, scorer.version], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:4]


class JudgeSession:
    """The judge model of one eval stage, started when the first judged dataset needs it."""

    def __init__(self, run: RunDir, config: Any, cache: ResponseCache | None) -> None:
        self.run = run
        self.config = config
        self.cache = cache
        self._backend: Any = None
        self.failed = 0  # judged items whose judge request failed (not scored)

    async def _started(self, scorer: Any = None) -> Any:
        if self._backend is None:
            if self.config is None:
                raise ConfigError(
                    "a dataset is scored by a judge (scorer cascade or llm_judge) but no judge model is set: "
                    "add `judge:` to the config or pass --judge-api-base URL (or --judge-model PRESET)"
                )
            from proctor.models import create_backend

            backend = create_backend(self.config)
            await backend.start()
            self._backend = backend
            self._record_in_manifest(scorer)
        return self._backend

    def _record_in_manifest(self, scorer: Any = None) -> None:
        from proctor.scoring.judge import TEMPLATE, template_sha

        manifest = read_manifest(self.run)
        info = model_info(self.config, identity=self._backend.identity, chat=self._backend.chat)
        manifest["judge"] = {"name": self._backend.name, **info,
                             "template_sha256": template_sha(getattr(scorer, "template", TEMPLATE))}
        write_json_atomic(self.run.manifest_path, manifest)

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

    async def score(self, model: str, dataset: PreparedDataset, scorer: Any,
                    records: Mapping[str, Record], answered: list[Item]) -> dict[str, Score]:
        """Scores of the answered items: the rule's where it decides, the judge's elsewhere."""
        first: dict[str, tuple[Score | None, bool]] = {
            item.id: scorer.first_pass(item.sample, records[item.id]) for item in answered
        }
        budget = self._budget()
        asked = [(item, _with_budget(scorer.judge_request(item.sample, records[item.id]), budget))
                 for item in answered if first[item.id][1]]
        replies: dict[str, Record] = {}
        if asked:
            backend = await self._started(scorer)
            store = PredictionStore(self.run.judgements(model, dataset.config.abbr))
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
