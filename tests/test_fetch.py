"""proctor.datasets.fetch on the specs' data sources: real downloads from a local hub-like HTTP server."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.datasets import DataSource, fetch
from proctor.errors import DataError
from proctor.tasks import get_spec, load_samples

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MMLU_PINNED = "7a00892cd331d78a88c8c869d0224a5cdd149848"  # the fallback revision of cais/mmlu


class FakeHub:
    """Serves files at the hub's /datasets/<repo>/resolve/<revision>/<file> paths, as the hub does."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                data = hub.files.get(self.path.split("?")[0])
                if data is None:
                    # What the hub sends for a file that is not in the repo at this revision.
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                # huggingface_hub requires X-Repo-Commit and an ETag; it checks the size against Content-Length.
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, filename: str, data: bytes, revision: str = "main") -> None:
        self.files[f"/datasets/{repo_id}/resolve/{revision}/{filename}"] = data

    def count(self, command: str, filename: str) -> int:
        return sum(1 for c, p in self.requests if c == command and p.endswith("/" + filename))


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A fresh hub cache (HF_HOME) in tmp_path and no token, offline flag or data root from outside."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "PROCTOR_DATA"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def hub(hub_env: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    hub_env.setenv("HF_ENDPOINT", server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _source(name: str) -> DataSource:
    return get_spec(name).data_source()


def _shared(relative: str) -> bytes:
    return (SHARED_DATASETS / relative).read_bytes()


@needs_shared_data
def test_fetch_ceval_end_to_end(hub: FakeHub, tmp_path: Path) -> None:
    # ceval-exam.zip holds dev/, val/ and test/ at its top level.
    members = {
        f"{split}/{subject}_{split}.csv": _shared(f"ceval/{split}/{subject}_{split}.csv")
        for subject in ("computer_network", "logic")
        for split in ("dev", "val", "test")
    }
    archive = _zip(members)
    hub.add("ceval/ceval-exam", "ceval-exam.zip", archive)
    dest = tmp_path / "data"

    root = fetch(_source("ceval"), dest=dest)

    assert root == dest
    for name, data in members.items():
        assert (dest / "ceval" / name).read_bytes() == data  # original layout, byte for byte
    samples = load_samples("ceval", "computer_network", "val", data_dir=root)
    assert samples == load_samples("ceval", "computer_network", "val", data_dir=SHARED_DATASETS)
    assert len(samples) == 19
    source = json.loads((dest / "ceval" / ".proctor-source.json").read_text(encoding="utf-8"))
    assert source == {
        "repo_id": "ceval/ceval-exam",
        "filename": "ceval-exam.zip",
        "revision": "main",
        "sha256": hashlib.sha256(archive).hexdigest(),
        "files": 6,
    }
    assert ("GET", "/datasets/ceval/ceval-exam/resolve/main/ceval-exam.zip") in hub.requests
    assert not list(dest.rglob("*.part"))
    # The download sits in the hub cache under HF_HOME: a second fetch does not download again.
    assert list((tmp_path / "hf-home" / "hub").glob("datasets--ceval--ceval-exam/snapshots/*/ceval-exam.zip"))
    fetch(_source("ceval"), dest=dest)
    assert hub.count("GET", "ceval-exam.zip") == 1


@needs_shared_data
def test_fetch_mmlu_falls_back_to_the_pinned_revision(hub: FakeHub, tmp_path: Path) -> None:
    # data.tar holds data/{dev,val,test,auxiliary_train}/; here it is gone from `main`, as after a parquet conversion.
    members = {
        "data/dev/astronomy_dev.csv": _shared("mmlu/data/dev/astronomy_dev.csv"),
        "data/test/astronomy_test.csv": _shared("mmlu/data/test/astronomy_test.csv"),
        "data/val/college_physics_val.csv": _shared("mmlu/data/val/college_physics_val.csv"),
        "data/auxiliary_train/race.csv": b"not needed,a,b,c,d,A\n",
    }
    hub.add("cais/mmlu", "data.tar", _tar(members), revision=MMLU_PINNED)

    root = fetch(_source("mmlu"), dest=tmp_path / "data")

    assert hub.count("HEAD", "data.tar") == 2  # main (404), then the pinned commit
    assert (root / "mmlu/data/test/astronomy_test.csv").read_bytes() == members["data/test/astronomy_test.csv"]
    assert not (root / "mmlu/data/auxiliary_train").exists()
    assert len(load_samples("mmlu", "astronomy", "test", data_dir=root)) == 152
    physics = load_samples("mmlu", "college_physics", "val", data_dir=root)
    assert sum("\r\n" in s.question for s in physics) == 2  # CR LF inside fields survives the trip
    source = json.loads((root / "mmlu" / ".proctor-source.json").read_text(encoding="utf-8"))
    assert source["revision"] == MMLU_PINNED and source["files"] == 3


@needs_shared_data
def test_fetch_cmmlu_ignores_folders_and_unsafe_names(hub: FakeHub, tmp_path: Path) -> None:
    data = _shared("cmmlu/data/test/anatomy.csv")
    archive = _zip({
        "cmmlu_v1_0_1/test/anatomy.csv": data,  # an extra top-level folder is fine
        "cmmlu_v1_0_1/dev/anatomy.csv": _shared("cmmlu/data/dev/anatomy.csv"),
        "../../escape/test/anatomy_evil.csv": b"x",  # never used as a path
        "test/not_a_subject.csv": b"x",
    })
    hub.add("haonan-li/cmmlu", "cmmlu_v1_0_1.zip", archive)
    dest = tmp_path / "deep" / "data"

    root = fetch(_source("cmmlu"), dest=dest)

    assert (root / "cmmlu/data/test/anatomy.csv").read_bytes() == data
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv") if "hf-home" not in p.parts) == [
        "deep/data/cmmlu/data/dev/anatomy.csv",
        "deep/data/cmmlu/data/test/anatomy.csv",
    ]
    assert len(load_samples("cmmlu", "anatomy", "test", data_dir=root)) == 148


def test_missing_archive_is_a_data_error(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch(_source("cmmlu"), dest=tmp_path / "data")
    message = str(info.value)
    assert f"{hub.url}/datasets/haonan-li/cmmlu/resolve/main/cmmlu_v1_0_1.zip" in message
    assert "haonan-li/cmmlu" in message and "HF_ENDPOINT" in message and "\n" not in message


def test_dropped_connection_is_a_data_error(tmp_path: Path, hub_env: pytest.MonkeyPatch) -> None:
    # A server that accepts each connection and closes it without answering (a broken proxy or mirror).
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def drop_all() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at the end of the test
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    hub_env.setenv("HF_ENDPOINT", url)
    try:
        archive_url = f"{url}/datasets/ceval/ceval-exam/resolve/main/ceval-exam.zip"
        with pytest.raises(DataError, match=rf"^could not download {re.escape(archive_url)} .*HF_ENDPOINT"):
            fetch(_source("ceval"), dest=tmp_path / "data")
    finally:
        listener.close()
    assert not (tmp_path / "data").exists()


def test_endpoint_that_is_not_a_hub_is_a_data_error(tmp_path: Path, hub_env: pytest.MonkeyPatch) -> None:
    # HF_ENDPOINT set to a plain web server: 200 answers without the hub's X-Repo-Commit header.
    class Plain(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Plain) as plain:
        threading.Thread(target=plain.serve_forever, daemon=True).start()
        hub_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{plain.server_address[1]}")
        try:
            with pytest.raises(DataError, match="X-Repo-Commit.*HF_ENDPOINT"):
                fetch(_source("mmlu"), dest=tmp_path / "data")
        finally:
            plain.shutdown()


def test_corrupt_or_foreign_archive_is_a_data_error(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("ceval/ceval-exam", "ceval-exam.zip", b"<html>a proxy error page</html>")
    with pytest.raises(DataError, match="not a readable archive"):
        fetch(_source("ceval"), dest=tmp_path / "data")
    hub.add("haonan-li/cmmlu", "cmmlu_v1_0_1.zip", _zip({"README.md": b"nothing here"}))
    with pytest.raises(DataError, match="no CMMLU data files found in the archive"):
        fetch(_source("cmmlu"), dest=tmp_path / "data")


def test_benchmark_without_an_archive_is_a_data_error(tmp_path: Path, hub_env: pytest.MonkeyPatch) -> None:
    # A spec whose `source` has no `archive` (a user's own benchmark) cannot be fetched.
    from proctor.tasks import spec_from_dict

    spec = spec_from_dict({"name": "mine", "title": "My Bench", "source": {"layouts": ["mine/{split}.jsonl"]}}, "mine.yaml")
    with pytest.raises(DataError, match=r"^My Bench has no download source; put its files under --data-dir yourself$"):
        fetch(spec.data_source(), dest=tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_hub_retry_is_printed_once(tmp_path: Path) -> None:
    """The hub's retry warning once, through Proctor's log handler (issue 21 §3: each retry was
    printed twice, the hub's own handler coming back when its download code was imported)."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s', stream=sys.stderr)\n"
        "from proctor.datasets.fetch import _one_line_per_retry\n"
        "with _one_line_per_retry():\n"
        "    from huggingface_hub import hf_hub_download  # as the download does, inside the block\n"
        "    log = logging.getLogger('huggingface_hub.utils._http')\n"
        "    log.warning(\"'HTTP Error 503' thrown while requesting HEAD https://hub/x\")\n"
        "    log.warning('Retrying in 1s [Retry 1/5].')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if "Retry" in line]
    assert lines == ["WARNING download failed (HTTP Error 503); retrying in 1s [Retry 1/5]."], proc.stderr
