"""VLLMBackend: a local checkpoint run with vLLM's offline engine (extra `proctor[vllm]`).

Prompts are tokenized here, with the model's own Hugging Face tokenizer and the same
rules as HFBackend (chat template, left truncation, the log-likelihood continuation
rule), and handed to vLLM as token ids, so both backends score exactly the same
tokens. vLLM batches internally; one engine call runs at a time, in a worker thread.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from proctor.config.schema import VLLMModelConfig, model_abbr
from proctor.core import Request, Response
from proctor.errors import BackendError, MissingExtraError
from proctor.models.base import OnResponse, PromptLogprobs, local_settings_tag

log = logging.getLogger("proctor.models.vllm")

_CHUNK = 512  # requests per engine call: vLLM batches inside; answers arrive per chunk


@dataclass(eq=False)
class _Row:
    """One generate request on its way through vLLM (one or two passes)."""

    index: int
    request: Request
    prompt: list[int]
    thought: Any  # proctor.models.thought.Thought
    native: bool  # vLLM applies the stop strings itself (no thought is expected)
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stopped_by_string: bool = False


class VLLMBackend:
    """vLLM behind the Backend protocol: generation, and scoring through prompt log-probs."""

    def __init__(self, config: VLLMModelConfig) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtraError("vllm", "vllm")
        self.config = config
        self.name = model_abbr(config)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._identity: str | None = None
        self._chat = False
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-vllm")
        self._warned_truncation = False

    @property
    def identity(self) -> str:
        self._require_started()
        assert self._identity is not None
        return self._identity + local_settings_tag(self.config)

    @property
    def chat(self) -> bool:
        self._require_started()
        return self._chat

    async def start(self) -> None:
        if self._llm is None:
            await asyncio.to_thread(self._load)

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None:
        loop = asyncio.get_running_loop()
        for at in range(0, len(requests), _CHUNK):
            chunk = list(requests[at: at + _CHUNK])
            answers = await loop.run_in_executor(self._executor, self.run_requests, chunk)
            for i, answer in enumerate(answers):
                on_response(at + i, answer)

    async def close(self) -> None:
        self._llm = None
        executor = self._executor
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-vllm")
        await asyncio.to_thread(executor.shutdown, wait=True)
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    async def prompt_logprobs(self, prompts: Sequence[str]) -> list[PromptLogprobs]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.prompt_logprobs_sync, prompts)

    # -- blocking API -------------------------------------------------------------------

    def run_requests(self, requests: Sequence[Request]) -> list[Response]:
        """Answer requests of any kind, in order (blocking)."""
        self._require_started()
        answers: list[Response | None] = [None] * len(requests)
        gen = [i for i, r in enumerate(requests) if r.kind == "generate"]
        ll = [i for i, r in enumerate(requests) if r.kind == "loglikelihood"]
        for i, r in enumerate(requests):
            if r.kind not in ("generate", "loglikelihood"):
                answers[i] = Response(error=f"unknown request kind {r.kind!r}")
        started = time.perf_counter()
        with self._lock:
            for i, a in zip(gen, self._generate([requests[i] for i in gen])):
                answers[i] = a
            for i, a in zip(ll, self._loglikelihood([requests[i] for i in ll])):
                answers[i] = a
        latency = time.perf_counter() - started
        return [replace(a, latency_s=latency) if a is not None else Response(error="no answer")
                for a in answers]

    def prompt_logprobs_sync(self, prompts: Sequence[str]) -> list[PromptLogprobs]:
        from proctor.models.hf_loglikelihood import tokenize_prompts

        self._require_started()
        with self._lock:
            encoded, truncated_from = tokenize_prompts(self._tokenizer, prompts,
                                                       self.config.max_seq_len)
            if truncated_from is not None:
                self._warn_truncation()
            scored = self._prompt_token_logprobs([ids for ids, _ in encoded])
            return [
                PromptLogprobs(
                    tokens=tuple(self._tokenizer.decode([t]) for t in ids),
                    offsets=tuple(starts),
                    logprobs=tuple(lps),
                )
                for (ids, starts), lps in zip(encoded, scored)
            ]

    # -- internals ----------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._llm is None:
            raise RuntimeError(f"VLLMBackend '{self.name}' is not started: await start() first")

    def _load(self) -> None:
        from proctor.models.hf_loading import (
            check_model_dir,
            check_tokenizer_dir,
            resolve_checkpoint,
        )

        cfg = self.config
        model_src, model_dir = resolve_checkpoint(cfg.path, "model")
        check_model_dir(model_dir, cfg.path, cfg.trust_remote_code)
        tok_src, tok_dir = (resolve_checkpoint(cfg.tokenizer_path, "tokenizer")
                            if cfg.tokenizer_path else (model_src, model_dir))
        check_tokenizer_dir(tok_dir, cfg.tokenizer_path or cfg.path, cfg.trust_remote_code)
        from vllm import LLM

        from proctor.models.identity import generation_settings, model_identity

        try:
            llm = LLM(
                model=model_src,
                tokenizer=tok_src,
                dtype=cfg.dtype,
                tensor_parallel_size=cfg.num_gpus,
                max_model_len=cfg.max_seq_len,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                trust_remote_code=cfg.trust_remote_code,
                seed=0,
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise BackendError(
                f"vLLM cannot load model '{cfg.path}': {type(exc).__name__}: {first}"
            ) from None
        tokenizer = llm.get_tokenizer()
        dtype = str(getattr(llm.llm_engine.model_config, "dtype", cfg.dtype)).replace("torch.", "")
        self._tokenizer = tokenizer
        self._chat = cfg.chat if cfg.chat is not None else bool(getattr(tokenizer, "chat_template", None))
        self._identity = model_identity("vllm", Path(model_dir), Path(tok_dir), tokenizer, dtype,
                                        generation_settings(cfg))
        self._llm = llm

    def count_tokens(self, request: Request) -> int:
        """The tokens a request takes in this model's context, counted as HFBackend counts them
        (its tokenizer and chat template), so the engine fits prompts instead of cutting them."""
        from proctor.models.hf_render import render_generate

        self._require_started()
        if request.kind == "loglikelihood":
            longest = max(request.continuations, key=len, default="")
            return len(self._tokenizer((request.context or "") + longest)["input_ids"])
        return render_generate(self._tokenizer, request, self._chat, 1 << 30).full_length + request.max_tokens

    def _warn_truncation(self) -> None:
        if not self._warned_truncation:
            self._warned_truncation = True
            log.warning("model %s: an input is longer than max_seq_len %d; keeping its end "
                        "(truncated from the left). Further truncations are not reported.",
                        self.name, self.config.max_seq_len)

    def _generate(self, requests: Sequence[Request]) -> list[Response]:
        """Generate; stop strings never end a thought (see `_finish_thoughts`)."""
        from proctor.models.hf_render import render_generate
        from proctor.models.thought import thought_for

        answers: list[Response | None] = [None] * len(requests)
        rows: list[_Row] = []
        markers = self.config.reasoning_markers()
        for i, r in enumerate(requests):
            try:
                rendered = render_generate(self._tokenizer, r, self._chat, self.config.max_seq_len,
                                           self.config.chat_template_kwargs)
            except Exception as exc:
                answers[i] = Response(error=f"{type(exc).__name__}: {exc}")
                continue
            if rendered.truncated:
                self._warn_truncation()
            if r.max_tokens <= 0:
                answers[i] = Response(text="", prompt_tokens=len(rendered.ids), completion_tokens=0)
                continue
            thought = thought_for(markers, self._tokenizer.decode(list(rendered.ids[-16:])))
            # A thought the prompt opened (or a reasoning model's) gets no stop strings from vLLM:
            # they are applied after its close, below. Others keep them, checked afterwards.
            native = bool(r.stop) and not (thought.opened or self.config.reasoning)
            rows.append(_Row(i, r, list(rendered.ids), thought, native))
        if rows:
            try:
                self._run_rows(rows)
                self._finish_thoughts(rows)
            except Exception as exc:
                for row in rows:
                    answers[row.index] = Response(error=f"{self.name}: {type(exc).__name__}: {exc}")
                return [a or Response(error="no answer") for a in answers]
            for row in rows:
                answers[row.index] = self._response(row)
        return [a or Response(error="no answer") for a in answers]

    def _params(self, r: Request, max_tokens: int, stop: Sequence[str] | None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=1,
            temperature=r.temperature,
            max_tokens=max_tokens,
            stop=list(stop) if stop else None,
            # A repeat is its own sample (the model's own generation_kwargs win).
            **{**({"seed": r.seed} if r.seed is not None else {}), **self.config.generation_kwargs},
        )

    def _run_rows(self, rows: Sequence[_Row]) -> None:
        """First pass: every row, with its stop strings where `native`."""
        outputs = self._llm.generate(
            [{"prompt_token_ids": row.prompt} for row in rows],
            [self._params(row.request, row.request.max_tokens, row.request.stop if row.native else None)
             for row in rows],
            use_tqdm=False,
        )
        for row, out in zip(rows, outputs):
            completion = out.outputs[0]
            row.tokens = list(completion.token_ids)
            row.finish_reason = getattr(completion, "finish_reason", None)
            row.stopped_by_string = isinstance(getattr(completion, "stop_reason", None), str)

    def _finish_thoughts(self, rows: Sequence[_Row]) -> None:
        """A row vLLM stopped at a stop string inside a thought (a model that opened `<think>`
        itself) goes on from where it stopped, without stop strings, up to its budget: the same
        tokens it would have generated, since the prompt and what it generated are the context."""
        from proctor.models.thought import stopped_inside

        more = [row for row in rows if row.native and row.stopped_by_string
                and len(row.tokens) < row.request.max_tokens
                and stopped_inside(self._decode(row.tokens, row.thought), row.thought)]
        if not more:
            return
        outputs = self._llm.generate(
            [{"prompt_token_ids": row.prompt + row.tokens} for row in more],
            [self._params(row.request, row.request.max_tokens - len(row.tokens), None) for row in more],
            use_tqdm=False,
        )
        for row, out in zip(more, outputs):
            completion = out.outputs[0]
            row.tokens += list(completion.token_ids)
            row.finish_reason = getattr(completion, "finish_reason", None)

    def _decode(self, tokens: Sequence[int], thought: Any = None) -> str:
        from proctor.models.thought import decode_output

        return decode_output(self._tokenizer, tokens, thought)

    def _response(self, row: _Row) -> Response:
        """The row's answer: cut at its stop strings after the thought closed (settle)."""
        from proctor.models.thought import settle

        text = self._decode(row.tokens, row.thought)
        done = settle(text, row.request.stop, row.thought, len(row.tokens), row.request.max_tokens,
                      lambda part: len(self._tokenizer(part, add_special_tokens=False)["input_ids"]))
        finish = row.finish_reason
        if done.text != text:
            finish = "stop"
        elif done.hit_length:
            finish = "length"
        return Response(text=done.text, prompt_tokens=len(row.prompt), completion_tokens=len(row.tokens),
                        finish_reason=finish, reasoning_ended=done.reasoning_ended,
                        reasoning_tokens=done.reasoning_tokens)

    def _loglikelihood(self, requests: Sequence[Request]) -> list[Response]:
        from proctor.models.hf_loglikelihood import tokenize_scored

        answers: list[Response] = []
        flat: list[Any] = []
        spans: list[tuple[int, int]] = []
        for r in requests:
            scored = [tokenize_scored(self._tokenizer, r.context or "", c, self.config.max_seq_len)
                      for c in r.continuations]
            if any(s.truncated for s in scored):
                self._warn_truncation()
            spans.append((len(flat), len(scored)))
            flat.extend(scored)
        try:
            logprobs = self._prompt_token_logprobs([s.ids for s in flat])
        except Exception as exc:
            return [Response(error=f"{self.name}: {type(exc).__name__}: {exc}") for _ in requests]
        for at, n in spans:
            sums = []
            for s, lps in zip(flat[at: at + n], logprobs[at: at + n]):
                sums.append(float(sum(lp for lp in lps[s.start:] if lp is not None)))
            answers.append(Response(
                loglikelihoods=tuple(sums),
                continuation_lengths=tuple(len(s.ids) - s.start for s in flat[at: at + n]),
                prompt_tokens=max((len(s.ids) for s in flat[at: at + n]), default=0),
            ))
        return answers

    def _prompt_token_logprobs(self, prompts: Sequence[Sequence[int]]) -> list[list[float | None]]:
        """log P(token j | tokens before j) for every prompt token (None for the first)."""
        from vllm import SamplingParams

        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("an empty prompt has no tokens to score")
        # max_tokens must be >= 1; the one generated token is ignored.
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)
        outputs = self._llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params,
                                     use_tqdm=False)
        result = []
        for ids, out in zip(prompts, outputs):
            per_token = out.prompt_logprobs or []
            lps: list[float | None] = [None]
            for j in range(1, len(ids)):
                entry = per_token[j] if j < len(per_token) else None
                lps.append(float(entry[ids[j]].logprob) if entry is not None else None)
            result.append(lps)
        return result
