"""manifest.json says what produced a run, checkably, and holds no secret."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import only_run, read_manifest, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

import proctor
from proctor.cli import main
from proctor.config.schema import HFModelConfig
from proctor.engine.manifest import model_info, public_url

SECRET = "sk-manifest-test-9d8e7f6a5b"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_shared_data
def test_manifest_records_versions_data_hashes_prompts_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANIFEST_TEST_KEY", SECRET)

    def argv(base_url: str, *extra: str) -> list[str]:
        return run_args(base_url, tmp_path / "out", ["ceval-computer_network", "mmlu-anatomy_ppl"], 3,
                        "--api-key-env", "MANIFEST_TEST_KEY", "--fewshot", "2", *extra)

    with OpenAIServer(lambda body: "A", api_key=SECRET, model_ids=["served"]) as server:
        assert main(argv(server.base_url)) == 0
        base, port = server.base_url, server.port
    run = only_run(tmp_path / "out")
    text = (run / "manifest.json").read_text(encoding="utf-8")
    assert SECRET not in text
    manifest = json.loads(text)

    assert manifest["proctor"]["version"] == proctor.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(proctor.__file__).parent, capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert manifest["proctor"]["git_commit"] == head.stdout.strip()
    assert manifest["python"] == platform.python_version()
    for name in ("httpx", "pydantic"):
        assert manifest["libraries"][name] == metadata.version(name)
    assert manifest["seed"] == 0 and manifest["runner"] == "local"
    assert manifest["command"][:3] == ["proctor", "run", "--api-base"] and "--api-key-env" in manifest["command"]

    # Each data file the run read, with the sha256 of its bytes.
    expected_files = {}
    # Written out, not asked of the code under test: the scored split, then the few-shot one.
    read = {
        "ceval-computer_network": ["ceval/val/computer_network_val.csv", "ceval/dev/computer_network_dev.csv"],
        "mmlu-anatomy_ppl": ["mmlu/data/test/anatomy_test.csv", "mmlu/data/dev/anatomy_dev.csv"],
    }
    for abbr, relative in read.items():
        files = [(SHARED_DATASETS / rel).resolve() for rel in relative]
        entry = manifest["datasets"][abbr]
        assert entry["data_files"] == {str(p): _sha256(Path(p)) for p in files}
        assert entry["n"] == 3 and entry["fewshot"] == 2
        expected_files.update(entry["data_files"])
    assert manifest["data_files"] == expected_files
    # The versions Proctor 0.1 printed (tests/data/prompt_pins.json): specs changed no prompt.
    assert manifest["datasets"]["ceval-computer_network"]["prompt_version"] == "e50e26g"
    assert manifest["datasets"]["mmlu-anatomy_ppl"]["prompt_version"] == "2eda45p"
    assert manifest["datasets"]["ceval-computer_network"]["scorer"]["name"] == "choice"
    assert manifest["datasets"]["ceval-computer_network"]["items"] == 3

    model = manifest["models"]["served"]
    assert model["type"] == "api" and model["model_id"] == "served" and model["api_base"] == base
    assert model["identity"] == f"api|{base}|served|chat" and model["chat"] is True
    digests = manifest["requests_sha256"]["served"]
    assert set(digests) == {"ceval-computer_network", "mmlu-anatomy_ppl"}
    assert all(len(d) == 64 for d in digests.values()) and len(set(digests.values())) == 2
    assert len(manifest["invocations"]) == 1

    # A resumed run keeps the first command and adds its own; the hashes of unchanged prompts stay.
    with OpenAIServer(lambda body: "A", api_key=SECRET, model_ids=["served"], port=port) as server:  # same endpoint
        assert main(argv(server.base_url, "-r", "latest")) == 0
    again = read_manifest(run)
    assert len(again["invocations"]) == 2 and again["invocations"][0]["command"] == manifest["command"]
    assert again["requests_sha256"] == manifest["requests_sha256"]


def test_public_url_drops_credentials_and_query() -> None:
    assert public_url("https://user:pa55@api.example.com:8443/v1/?key=sk-1#x") == "https://api.example.com:8443/v1"
    assert public_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"


def test_local_model_identity_hashes_config_tokenizer_and_chat_template(tiny_model_dir: Path) -> None:
    info = model_info(HFModelConfig(path=str(tiny_model_dir)), identity="hf|x", chat=True)
    assert info["path"] == str(tiny_model_dir.resolve())
    assert info["config_sha256"] == _sha256(tiny_model_dir / "config.json")
    template_file = tiny_model_dir / "chat_template.jinja"
    if template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    else:
        template = json.loads((tiny_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]
    assert info["chat_template_sha256"] == hashlib.sha256(template.encode("utf-8")).hexdigest()
    assert "tokenizer.json" in info["tokenizer_files"] and len(info["tokenizer_sha256"]) == 64
    assert info["weights"] and all(size > 0 for size in info["weights"].values())
    # The settings hash follows what changes answers.
    other = model_info(HFModelConfig(path=str(tiny_model_dir), max_out_len=7), identity="hf|x", chat=True)
    assert other["settings_sha256"] != info["settings_sha256"]
