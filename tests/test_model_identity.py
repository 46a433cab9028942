"""A local model's identity covers its whole weights and every setting that changes an answer,
so the response cache never gives one checkpoint another's answers."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from run_helpers import model_run_args, read_records, run_new
from shared_data import needs_shared_data

from proctor.config.schema import HFModelConfig
from proctor.models import identity as identity_mod
from proctor.models.identity import generation_settings, model_identity, weight_digests

DATASET = "ceval-computer_network"


def tensor_span(weights: Path, name: str) -> tuple[int, int]:
    """(start, end) byte offsets of one tensor's data inside a safetensors file."""
    with weights.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    start, end = header[name]["data_offsets"]
    return 8 + header_len + start, 8 + header_len + end


def fine_tune_middle_tensor(model_dir: Path) -> None:
    """Change one tensor far from both ends of the file, in place (same size, same inode),
    as a fine-tune of a few layers would: its first and last 64 KiB stay the same."""
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size
    start, end = tensor_span(weights, "model.layers.0.mlp.down_proj.weight")
    assert start > 65536 and end < size - 65536, "the tensor must lie in the middle of the file"
    with weights.open("r+b") as fh:
        fh.seek(start)
        data = bytearray(fh.read(end - start))
        floats = memoryview(data).cast("f")
        for i in range(len(floats)):
            floats[i] = floats[i] * -3.0 + 0.05
        fh.seek(start)
        fh.write(data)
    assert weights.stat().st_size == size


def _run(model_dir: Path, work: Path, *extra: str) -> list[dict[str, Any]]:
    argv = model_run_args(["--hf-path", str(model_dir)], work, [DATASET], 4, "--fewshot", "0",
                          "--max-out-len", "6", *extra)
    run = run_new(argv, work)
    return sorted(read_records(run, "ckpt", DATASET), key=lambda r: r["item_id"])


@needs_shared_data
def test_a_fine_tune_of_a_middle_tensor_gets_no_cached_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, model_dir)
    base = _run(model_dir, tmp_path / "w1")
    assert not any(r["cached"] for r in base)
    assert all(r["cached"] for r in _run(model_dir, tmp_path / "w2"))  # the cache works at all
    fine_tune_middle_tensor(model_dir)
    tuned = _run(model_dir, tmp_path / "w3")
    assert not any(r["cached"] for r in tuned)
    # Not a vacuous check: the tuned model really answers otherwise.
    assert [r["output"] for r in tuned] != [r["output"] for r in base]


def test_weight_digests_are_remembered_per_file_version(tiny_model_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, model_dir)
    memo = tmp_path / "memo"
    reads: list[Path] = []
    real = identity_mod._sha256_file
    monkeypatch.setattr(identity_mod, "_sha256_file", lambda p: reads.append(p) or real(p))

    first = weight_digests(model_dir, memo)
    assert weight_digests(model_dir, memo) == first and len(reads) == 1  # the second costs nothing
    assert json.loads((memo / "weight-digests.json").read_text())["files"]

    # Overwritten in place with its old size and mtime restored (as `cp -p` does): read again.
    weights = model_dir / "model.safetensors"
    st = weights.stat()
    fine_tune_middle_tensor(model_dir)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns and weights.stat().st_ino == st.st_ino
    second = weight_digests(model_dir, memo)
    assert len(reads) == 2 and second != first
    # A damaged memo only means hashing again.
    (memo / "weight-digests.json").write_text("{not json")
    assert weight_digests(model_dir, memo) == second and len(reads) == 3


def test_identity_covers_dtype_template_tokenizer_and_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, model_dir)
    tok = SimpleNamespace(chat_template="{{ messages }}")
    config = HFModelConfig(path=str(model_dir))

    def ident(tokenizer: Any = tok, dtype: str = "float32", **settings: Any) -> str:
        cfg = config.model_copy(update=settings)
        return model_identity("hf", model_dir, model_dir, tokenizer, dtype, generation_settings(cfg))

    base = ident()
    assert ident() == base
    # Batch size, devices and GPUs do not change an answer: same identity.
    assert ident(batch_size=2, num_gpus=0, device="cpu") == base
    others = [
        ident(dtype="bfloat16"),
        ident(tokenizer=SimpleNamespace(chat_template="{{ other }}")),
        ident(generation_kwargs={"repetition_penalty": 1.1}),
        ident(max_seq_len=512),
        ident(chat=False),
        ident(chat_template_kwargs={"enable_thinking": True}),
        ident(reasoning=True),
    ]
    gen_config = model_dir / "generation_config.json"
    gen_config.write_text(gen_config.read_text().replace("{", '{"top_k": 3,', 1))
    others.append(ident())
    (model_dir / "tokenizer.json").write_text((model_dir / "tokenizer.json").read_text() + " ")
    others.append(ident())
    assert len({base, *others}) == len(others) + 1
    # Settings other parts add (a served chat-template override) enter it too.
    assert model_identity("hf", model_dir, model_dir, tok, "float32",
                          generation_settings(config, chat_template_override="x")) != others[-1]


# --- proctor serve publishes the identity; the API backend keys on it -------------------

OTHER_TEMPLATE = "{% for m in messages %}<|user|>\n{{ m['content'] }}\n{% endfor %}<|assistant|>\n"


def _served_run(model_dir: Path, work: Path, port: int, **serve: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records of one API run against `proctor serve model_dir` on `port`, its /v1/models entry).
    The same port each time: the URL is part of the identity, so only the server's facts differ."""
    import httpx
    from serve_helpers import serve_options

    from proctor.serve.server import serve_in_thread

    with serve_in_thread(serve_options(model_dir, port=port, **serve)) as server:
        card = httpx.get(server.base_url + "/v1/models", timeout=30).json()["data"][0]
        argv = model_run_args(["--api-base", server.base_url + "/v1"], work, [DATASET], 4, "--fewshot", "0",
                              "--max-out-len", "6")
        run = run_new(argv, work)
    return sorted(read_records(run, "ckpt", DATASET), key=lambda r: r["item_id"]), card


@needs_shared_data
def test_serve_publishes_its_identity_and_another_checkpoint_or_setting_gets_no_cached_answers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    from proctor.serve.health import free_port

    port = free_port()
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, model_dir)
    first, card = _served_run(model_dir, tmp_path / "w1", port)
    assert card["fingerprint"].startswith("fp_") and not any(r["cached"] for r in first)
    assert {r["system_fingerprint"] for r in first} == {card["fingerprint"]}
    again, same_card = _served_run(model_dir, tmp_path / "w2", port)
    assert same_card["fingerprint"] == card["fingerprint"] and all(r["cached"] for r in again)

    fingerprints = {card["fingerprint"]}
    for name, serve in [("dtype", {"dtype": "bfloat16"}), ("template", {"chat_template": OTHER_TEMPLATE})]:
        records, other = _served_run(model_dir, tmp_path / f"w-{name}", port, **serve)
        assert not any(r["cached"] for r in records), name
        fingerprints.add(other["fingerprint"])
    # Another checkpoint copied to the same path.
    tuned = tmp_path / "tuned"
    shutil.copytree(tiny_model_dir, tuned)
    fine_tune_middle_tensor(tuned)
    shutil.rmtree(model_dir)
    shutil.copytree(tuned, model_dir)
    records, other = _served_run(model_dir, tmp_path / "w-copied", port)
    assert not any(r["cached"] for r in records)
    fingerprints.add(other["fingerprint"])
    assert len(fingerprints) == 4


@needs_shared_data
def test_resume_with_another_endpoint_under_the_same_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from openai_server import OpenAIServer

    from proctor.cli import main

    work = tmp_path / "w"
    info = {"m": {"root": "/ckpt/a"}}
    with OpenAIServer(model_ids=["m"], model_info=info) as first, OpenAIServer(model_ids=["m"]) as second:
        args = model_run_args(["--api-base", first.base_url], work, [DATASET], 2)
        run_new(args, work)
        # The same endpoint and checkpoint: resuming is fine.
        assert main([*args, "-r", "latest"]) == 0
        capsys.readouterr()
        other = model_run_args(["--api-base", second.base_url], work, [DATASET], 2, "-r", "latest")
        assert main(other) == 2
        assert not second.post_requests()  # refused before anything was asked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-r: model m is not the model that made this run's records" in err[0]
    assert first.base_url in err[0] and second.base_url in err[0]
