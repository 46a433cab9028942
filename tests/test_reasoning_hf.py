"""A local reasoning model (HF backend, the tiny model): its chat template opens `<think>` as
Qwen3's and DeepSeek-R1's do, the task has a stop string that occurs inside the thought, and
max_out_len is small. On real GSM8K rows every record must equal the truth computed here from
plain `model.generate` outputs: a stop string never ends a thought, a thought that never closed
is `truncated` (never read), and the answer is cut at the stop only after the thought closed."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from run_helpers import read_records, read_result, read_scores
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Record
from proctor.scoring import get_scorer
from proctor.tasks import load_samples

pytestmark = needs_shared_data
torch = pytest.importorskip("torch")

LIMIT = 12
MAX_OUT = 40
OPEN = "<think>"


@pytest.fixture(scope="module")
def thinker(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a chat template whose generation prompt opens a thought."""
    target = tmp_path_factory.mktemp("thinker") / "model"
    shutil.copytree(tiny_model_dir, target)
    template = target / "chat_template.jinja"
    text = template.read_text(encoding="utf-8")
    assert text.endswith("<|assistant|>\n{% endif %}")
    template.write_text(text.replace("<|assistant|>\n{% endif %}", "<|assistant|>\n<think>\n{% endif %}"),
                        encoding="utf-8")
    return target


def _plain_outputs(model_dir: Path, prompts: list[list[dict[str, str]]], kwargs: dict[str, Any]) -> list[str]:
    """Each prompt's greedy continuation by transformers alone (no stop strings, no markers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    outputs = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text.endswith("<think>\n")
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=MAX_OUT, do_sample=False, **kwargs)
        outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return outputs


def _spec(tmp_path: Path, stop: str) -> Path:
    """GSM8K's own spec with one more stop string for chat prompts."""
    import yaml

    import proctor.tasks

    builtin = Path(proctor.tasks.__file__).parent / "builtin" / "gsm8k.yaml"
    spec = yaml.safe_load(builtin.read_text(encoding="utf-8"))
    spec["name"] = "gsm8k_think"
    spec["prompt"]["stop"] = [stop]
    path = tmp_path / "gsm8k_think.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def _run(tmp_path: Path, name: str, model: dict[str, Any], datasets: list[str]) -> Path:
    config = tmp_path / f"{name}.yaml"  # JSON is YAML
    config.write_text(json.dumps({"models": [model], "datasets": datasets}), encoding="utf-8")
    work = tmp_path / name
    assert main(["run", str(config), "--limit", str(LIMIT), "--data-dir", str(SHARED_DATASETS), "-w", str(work),
                 "--no-cache"]) == 0  # cut-off thoughts are not failed requests
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    return run


def _ascii_pieces(texts: list[str], size: int) -> Counter[str]:
    """How many of `texts` hold each ASCII letter run of `size` characters."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({text[i: i + size] for i in range(len(text) - size + 1)
                       if text[i: i + size].isascii() and text[i: i + size].isalpha()})
    return counts


def _expected(text: str, end: str, stop: str) -> tuple[str | None, str]:
    """(the answer, or None when the thought never closed; the reasoning) of a plain output, as
    the issue defines it: the thought closes at the first `end`, the stop string counts only in
    the answer part (after the blanks that follow the closing marker)."""
    first = text.find(end)
    if first < 0:
        return None, text.strip()
    after = first + len(end)
    lead = len(text[after:]) - len(text[after:].lstrip())
    hit = text.find(stop, after + lead)
    generated = text if hit < 0 else text[: hit + len(stop)]
    last = generated.rfind(end) + len(end)
    answer = generated[last:]
    lead = len(answer) - len(answer.lstrip())
    cut = answer.find(stop, lead)
    return (answer if cut < 0 else answer[:cut]), generated[: last - len(end)].strip()


# Proctor's own greedy pool, and model.generate (a generation setting only it applies).
@pytest.mark.parametrize("kwargs", [{}, {"repetition_penalty": 1.3}], ids=["pool", "generate"])
def test_stop_strings_wait_for_the_thought_and_cut_thoughts_are_truncated(
    thinker: Path, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    samples = load_samples("gsm8k", "", "test", str(SHARED_DATASETS))[:LIMIT]
    # 1. The prompts Proctor sends, and what the model says to each with nothing cutting it.
    plain = _run(tmp_path, "plain", {"type": "hf", "path": str(thinker), "max_out_len": MAX_OUT}, ["gsm8k"])
    prompts = {r["item_id"]: r["prompt"] for r in read_records(plain, "model", "gsm8k")}
    texts = dict(zip(prompts, _plain_outputs(thinker, list(prompts.values()), kwargs)))
    assert all("think>" not in t for t in texts.values())  # the model never closes a <think> itself

    # A stop string that occurs inside most thoughts: before the fix it cut them, leaving no answer.
    counts = _ascii_pieces(list(texts.values()), 2)
    stop = max(counts, key=lambda p: (counts[p], p))
    assert counts[stop] >= LIMIT // 2

    # 2. Default tags (`reasoning: true`): the thought opened by the template never closes in
    # MAX_OUT tokens, so every item is truncated, and the stop string never fired inside it.
    spec = _spec(tmp_path, stop)
    tags = _run(tmp_path, "tags", {"type": "hf", "path": str(thinker), "max_out_len": MAX_OUT, "reasoning": True,
                                   "generation_kwargs": kwargs}, [str(spec)])
    result = read_result(tags, "model", "gsm8k_think")
    assert (result["n"], result["truncated"], result["value"]) == (LIMIT, LIMIT, 0.0)
    for record in read_records(tags, "model", "gsm8k_think"):
        text = texts[record["item_id"]]
        assert record["output"] == "" and record["reasoning_ended"] is False
        assert record["reasoning"].strip() == text.strip()  # the whole thought: not cut at the stop string
        assert record["reasoning_tokens"] == record["completion_tokens"]
    assert sum(stop in t for t in texts.values()) >= LIMIT // 2

    # 3. The model's own closing marker (a piece some outputs hold, once): answers follow it,
    # and the stop string cuts them only there.
    pieces = _ascii_pieces(list(texts.values()), 3)
    end = min((p for p in pieces if p != stop and stop not in p and 3 <= pieces[p] <= LIMIT - 3
               and all(t.count(p) <= 1 for t in texts.values())), key=lambda p: (abs(pieces[p] - LIMIT // 2), p))
    markers = {"start": OPEN, "end": end, "opened_by_prompt": True}
    custom = _run(tmp_path, "custom", {"type": "hf", "path": str(thinker), "max_out_len": MAX_OUT,
                                       "reasoning": markers, "generation_kwargs": kwargs}, [str(spec)])
    records = {r["item_id"]: r for r in read_records(custom, "model", "gsm8k_think")}
    scores = read_scores(custom, "model", "gsm8k_think")
    numeric = get_scorer("numeric")
    truth_truncated = 0
    cases: Counter[str] = Counter()
    right = 0.0
    for sample in samples:
        text, record, score = texts[sample.id], records[sample.id], scores[sample.id]
        answer, reasoning = _expected(text, end, stop)
        if answer is None:
            truth_truncated += 1
            cases["truncated"] += 1
            assert score["rule"] == "truncated" and record["reasoning_ended"] is False, sample.id
            assert stop not in text or record["reasoning"].strip() == text.replace(OPEN, "").strip()  # never cut inside
            continue
        thought = text[: text.find(end)]
        cases["stop in thought" if stop in thought else "no stop in thought"] += 1
        cases["cut at stop" if len(answer) < len(text) - text.find(end) - len(end) else "not cut"] += 1
        # Blanks alone after the thought are no answer (stored as "").
        assert record["output"] == (answer if answer.strip() else ""), (sample.id, text)
        assert record["reasoning_ended"] is True
        assert record["reasoning"] == reasoning.replace(OPEN, "").strip()
        expected = numeric.score(sample, Record(sample.id, None, answer, None))
        if answer.strip():
            assert (score["value"], score["answer"]) == (expected.value, expected.answer), sample.id
            right += expected.value
        else:
            assert score["rule"] == "no_answer"
    result = read_result(custom, "model", "gsm8k_think")
    assert result["truncated"] == truth_truncated and result["n"] == LIMIT
    assert result["value"] == pytest.approx(100.0 * right / LIMIT)
    # Every case the rule has was met: truncated, answered with the stop inside the thought, cut at it after.
    assert cases["truncated"] and cases["stop in thought"] and cases["cut at stop"], cases


def test_a_local_reasoning_model_gets_half_its_context(thinker: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """32768 tokens would leave a 2048-token context no room for the prompt (it would be cut
    to one token): a local model's reasoning budget is half its max_seq_len, and it is said."""
    run = _run(tmp_path, "half", {"type": "hf", "path": str(thinker), "reasoning": True, "max_seq_len": 560},
               ["gsm8k"])
    records = read_records(run, "model", "gsm8k")
    assert max(r["completion_tokens"] for r in records) == 280  # the thought never ends: all of the budget
    assert "answers get up to 280 tokens (half of its max_seq_len 560" in capsys.readouterr().err


def test_chat_template_kwargs_reach_the_template_and_the_identity(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Qwen3's switch: `enable_thinking` in the template opens the thought; the setting is given
    to apply_chat_template and is part of the model's identity (its cached answers are its own)."""
    import asyncio

    from proctor.config.schema import HFModelConfig
    from proctor.core import Message, Request
    from proctor.models.hf import HFBackend

    model = tmp_path / "qwen3ish"
    shutil.copytree(tiny_model_dir, model)
    template = model / "chat_template.jinja"
    template.write_text(template.read_text(encoding="utf-8").replace(
        "<|assistant|>\n{% endif %}", "<|assistant|>\n{% if enable_thinking %}<think>\n{% endif %}{% endif %}"),
        encoding="utf-8")
    request = Request("generate", messages=(Message("user", "What is 2 + 2?"),), max_tokens=6)

    def answer(**settings: Any) -> tuple[Any, str]:
        backend = HFBackend(HFModelConfig(path=str(model), **settings))
        got: dict[int, Any] = {}

        async def go() -> None:
            await backend.start()
            await backend.process([request], lambda i, r: got.__setitem__(i, r))
            got[1] = backend.identity
            await backend.close()

        asyncio.run(go())
        return got[0], got[1]

    thinking, thinking_id = answer(chat_template_kwargs={"enable_thinking": True})
    plain, plain_id = answer(chat_template_kwargs={"enable_thinking": False})
    default, default_id = answer()
    assert thinking.reasoning_ended is False and thinking.reasoning_tokens == thinking.completion_tokens == 6
    assert plain.reasoning_ended is None and default.reasoning_ended is None
    assert len({thinking_id, plain_id, default_id}) == 3
    assert answer(chat_template_kwargs={"enable_thinking": True})[1] == thinking_id
    assert answer(reasoning=True)[1] not in (default_id, thinking_id)
