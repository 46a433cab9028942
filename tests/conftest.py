"""Shared fixtures: the tiny locally built transformers model, an isolated response cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint with a chat template, built once and cached in
    .pytest_cache (rebuilt only when the build parameters change)."""
    pytest.importorskip("transformers", reason="the tiny model needs the [hf] extra")
    from proctor.tiny_model import build_tiny_model

    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    root = cache.mkdir("proctor-tiny-models") if cache is not None else tmp_path_factory.mktemp("tiny")
    return build_tiny_model(root / "tiny-chat")


@pytest.fixture(autouse=True)
def _isolated_response_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own response cache; none touches the user's cache dir."""
    monkeypatch.setenv("PROCTOR_CACHE_DIR", str(tmp_path / "cache"))
