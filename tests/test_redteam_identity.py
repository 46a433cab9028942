"""Red team: a tokenizer-only change must change a local model's identity (the response-cache
key), whatever the tokenizer's vocabulary file is called."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from proctor.models.identity import model_identity


@pytest.mark.parametrize("name", ["spiece.model", "sentencepiece.bpe.model", "qwen.tiktoken", "tokenizer.model.v3",
                                  "my_vocab.bin.vocab", "odd-name-declared"])
def test_a_changed_tokenizer_vocabulary_file_changes_the_identity(tiny_model_dir: Path, tmp_path: Path,
                                                                  name: str) -> None:
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, model_dir)
    vocab = model_dir / name
    vocab.write_bytes(b"\x0a\x05hello" * 100)
    # A tokenizer class that reads this file (as T5Tokenizer reads spiece.model).
    tok = SimpleNamespace(chat_template=None, vocab_files_names={"vocab_file": name, "tokenizer_file": "tokenizer.json"})
    before = model_identity("hf", model_dir, model_dir, tok, "float32", {})
    assert model_identity("hf", model_dir, model_dir, tok, "float32", {}) == before
    vocab.write_bytes(b"\x0a\x05hellp" * 100)  # another vocabulary: the same model answers otherwise
    assert model_identity("hf", model_dir, model_dir, tok, "float32", {}) != before
    # The same with the tokenizer in a folder of its own.
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    shutil.copy(vocab, tok_dir / name)
    before = model_identity("hf", model_dir, tok_dir, tok, "float32", {})
    (tok_dir / name).write_bytes(b"other")
    assert model_identity("hf", model_dir, tok_dir, tok, "float32", {}) != before


def test_a_separate_tokenizer_folders_config_changes_the_identity(tiny_model_dir: Path, tmp_path: Path) -> None:
    """AutoTokenizer reads the tokenizer folder's config.json to pick the tokenizer class."""
    tok_dir = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, tok_dir)
    tok = SimpleNamespace(chat_template=None)
    before = model_identity("hf", tiny_model_dir, tok_dir, tok, "float32", {})
    config = tok_dir / "config.json"
    config.write_text(config.read_text(encoding="utf-8").replace("{", '{"tokenizer_class": "GPT2Tokenizer",', 1),
                      encoding="utf-8")
    assert model_identity("hf", tiny_model_dir, tok_dir, tok, "float32", {}) != before
