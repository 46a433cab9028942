"""Build a tiny, randomly initialised Llama model + byte-level BPE tokenizer on disk.

Used by the tests, `make demo` and the benchmarks: it is a real transformers
checkpoint (config.json, model.safetensors, tokenizer.json, chat template), so the
real `from_pretrained` loading path runs, yet it is built offline in about a second.
Its outputs are gibberish; only their determinism matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

MARKER = "proctor_tiny_model.json"
_FORMAT = 1  # bump when the build recipe changes, so cached models are rebuilt

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Built-in training text: English and Chinese, prose and exam-style, so that common
# words of both languages get merged tokens and everything else falls back to bytes.
_CORPUS_EN = """\
The quick brown fox jumps over the lazy dog while the farmer watches from the gate.
A model is evaluated on a benchmark by asking it questions and comparing its answers with the gold answers.
Question: Which of the following is a prime number?
A. 4
B. 6
C. 7
D. 9
Answer: C
Question: What is the capital of France?
A. Berlin
B. Paris
C. Madrid
D. Rome
Answer: B
The students read the passage carefully, then they answered every question in the exam.
In computer networks, a router forwards packets between networks using routing tables.
The derivative of a function measures how quickly the function changes at each point.
Water boils at one hundred degrees Celsius at sea level, and it freezes at zero degrees.
History shows that trade, science and art flourish when people are free to exchange ideas.
Please answer the following question with a single letter: A, B, C or D.
The answer is therefore the option that best agrees with the evidence given in the text.
Let us think step by step. First we add the numbers, then we divide the sum by two.
She opened the window, looked at the rain and decided to stay at home with a good book.
An algorithm is a finite sequence of well defined instructions that solves a problem.
The law of conservation of energy states that energy can neither be created nor destroyed.
"""

_CORPUS_ZH = """\
以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。
问题：下列哪一个是质数？
A. 四
B. 六
C. 七
D. 九
答案：C
问题：中国的首都是哪一个城市？
A. 上海
B. 北京
C. 广州
D. 深圳
答案：B
学生们仔细阅读了文章，然后回答了考试中的每一个问题。
在计算机网络中，路由器根据路由表在不同的网络之间转发数据包。
函数的导数描述了函数在每一点上变化的快慢。
在标准大气压下，水在一百摄氏度沸腾，在零摄氏度结冰。
历史表明，当人们能够自由地交流思想时，贸易、科学和艺术就会繁荣。
请用一个字母回答下面的问题：A、B、C或D。
因此，答案是与文中证据最一致的那个选项。
让我们一步一步地思考。首先把数字相加，然后把和除以二。
算法是解决问题的有限的、定义明确的指令序列。
能量守恒定律指出，能量既不能被创造，也不能被消灭。
"""


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 1000,
    seed: int = 0,
    chat_template: bool = True,
    extra_corpus: Iterable[str] | None = None,
) -> Path:
    """Build (or reuse) a tiny LlamaForCausalLM checkpoint with its tokenizer at `path`.

    Idempotent: when `path` already holds a complete model built with the same
    parameters, it returns at once. `extra_corpus` adds tokenizer training text
    (e.g. benchmark questions, for realistic token counts with a bigger vocab).
    """
    target = Path(path).expanduser().resolve()
    extra = list(extra_corpus or ())
    params: dict[str, Any] = {
        "format": _FORMAT,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "vocab_size": vocab_size,
        "seed": seed,
        "chat_template": chat_template,
        "extra_corpus_sha256": hashlib.sha256("\x00".join(extra).encode("utf-8")).hexdigest(),
    }
    if _is_complete(target, params):
        return target
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")

    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename into place, so that a crash or a
    # concurrent build never leaves a half-written model that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(staging, params, extra)
        if target.exists():
            if _is_complete(target, params):  # another process won the race
                return target
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete(path: Path, params: dict[str, Any]) -> bool:
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8")) == params
    except (OSError, ValueError):
        return False


def _build(out: Path, params: dict[str, Any], extra: list[str]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(params["vocab_size"], extra, params["chat_template"])
    hidden = params["hidden_size"]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=(hidden * 8 // 3 + 7) // 8 * 8,
        num_hidden_layers=params["num_layers"],
        num_attention_heads=params["num_heads"],
        num_key_value_heads=params["num_heads"],
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        # Wider than the usual 0.02 so that next-token logits are well separated:
        # greedy outputs then do not hinge on float rounding (fewer near ties).
        initializer_range=0.1,
    )
    # Model init draws from the global RNG: fork it so that building a model does
    # not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params["seed"])
        model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / MARKER).write_text(json.dumps(params, indent=1) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No tqdm bars while saving: a build is a detail, not something to watch."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _train_tokenizer(vocab_size: int, extra: list[str], chat_template: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE: the 256 byte symbols are the base alphabet, so any text
    # (Chinese, emoji) encodes; unseen characters fall back to their UTF-8 bytes.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = (_CORPUS_EN + _CORPUS_ZH).splitlines() + extra
    tok.train_from_iterator(lines, trainer)
    bos = tok.token_to_id("<s>")
    # trim_offsets=False keeps each token's span covering its leading space, so
    # offsets tile the text (what the log-likelihood continuation rule relies on).
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
            ),
        ]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
        padding_side="left",
        model_max_length=4096,
    )
    if chat_template:
        wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def main(argv: list[str] | None = None) -> int:
    """`python -m proctor.tiny_model [PATH]`: build the tiny model and print where it is."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m proctor.tiny_model",
        description="Build a tiny, randomly initialised Llama checkpoint (config.json, model.safetensors, "
        "tokenizer.json, chat template) for trying Proctor offline: "
        "`proctor run --hf-path PATH --datasets demo_gen`. Its answers are gibberish.",
    )
    parser.add_argument("path", nargs="?", default="tiny-model", help="folder to build it in (default: ./tiny-model)")
    parser.add_argument("--no-chat-template", action="store_true", help="build a base model (no chat template)")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.path, chat_template=not args.no_chat_template))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
