"""Download a benchmark's official archive from the Hugging Face hub and unpack it into a data root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from proctor.datasets.locate import default_data_root
from proctor.datasets.source import DataSource, HubArchive
from proctor.errors import DataError

# Written next to the unpacked files: which archive they came from.
SOURCE_FILE = ".proctor-source.json"


def fetch(data: DataSource, dest: str | Path | None = None) -> Path:
    """Download and unpack a benchmark's archive into `dest` (default: the user cache dir); return the data root.

    The returned root can be passed as `data_dir` to `load_samples`. The hub
    endpoint follows $HF_ENDPOINT (e.g. a mirror); downloads are cached in the
    huggingface_hub cache ($HF_HOME), so a second fetch does not download again.
    """
    spec = data.source.archive
    if spec is None:
        raise DataError(f"{data.title} has no download source; put its files under --data-dir yourself")
    root = Path(dest).expanduser() if dest is not None else default_data_root()
    archive, revision = _download(spec)
    count = _unpack(archive, data, root)
    if count == 0:
        raise DataError(
            f"{archive}: no {data.title} data files found in the archive "
            f"from {spec.repo_id}; the hub file may have changed, download it yourself "
            f"and pass --data-dir"
        )
    top = root / PurePosixPath(data.source.layouts[0]).parts[0]
    source = {
        "repo_id": spec.repo_id,
        "filename": spec.filename,
        "revision": revision,
        "sha256": _sha256(archive),
        "files": count,
    }
    _write_atomic(top / SOURCE_FILE, (json.dumps(source, indent=2) + "\n").encode("utf-8"))
    return root


def _hub_cache_dir() -> str | None:
    # huggingface_hub reads HF_HOME once, at import; reading it here lets a
    # caller (or a test) change it later in the same process.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _download(spec: HubArchive) -> tuple[Path, str]:
    """Download the archive (trying spec.revisions in order); return its local path and revision."""
    try:  # huggingface_hub >= 1.0 tells "not on the server" from "not in the cache"
        from huggingface_hub.errors import RemoteEntryNotFoundError as NotOnHub
    except ImportError:  # older: EntryNotFoundError is the HTTP 404 error
        from huggingface_hub.utils import EntryNotFoundError as NotOnHub  # type: ignore[attr-defined,assignment]

    # Read at call time for the same reason as HF_HOME above.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    with _one_line_per_retry():
        return _download_revisions(spec, endpoint, NotOnHub)


def _download_revisions(spec: HubArchive, endpoint: str | None, NotOnHub: type[Exception]) -> tuple[Path, str]:
    from huggingface_hub import hf_hub_download, hf_hub_url

    for i, revision in enumerate(spec.revisions):
        url = hf_hub_url(
            spec.repo_id, spec.filename, repo_type="dataset", revision=revision, endpoint=endpoint
        )
        try:
            path = hf_hub_download(
                spec.repo_id,
                spec.filename,
                repo_type="dataset",
                revision=revision,
                endpoint=endpoint,
                cache_dir=_hub_cache_dir(),
            )
            return Path(path), revision
        except NotOnHub as err:
            if i + 1 < len(spec.revisions):
                continue  # not at this revision: try the next one
            raise _download_error(url, spec, err) from None
        # The hub client raises many kinds of errors (HTTP, connection, offline
        # mode, cache I/O); all of them mean the same thing to the user.
        except Exception as err:  # noqa: BLE001
            raise _download_error(url, spec, err) from None
    raise AssertionError("HubArchive.revisions is empty")  # pragma: no cover


class _RetryLines(logging.Filter):
    """huggingface_hub words each retry as two warnings ("'<error>' thrown while requesting ...",
    "Retrying in 1s [Retry 1/5]."): one line per retry instead, saying why."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "thrown while requesting" in message:
            self.reason = message.split(" thrown while requesting", 1)[0].strip("'")
            return False
        if message.startswith("Retrying in"):
            why = f" ({self.reason})" if self.reason else ""
            record.msg, record.args = f"download failed{why}; r{message[1:]}", ()
        return True


@contextlib.contextmanager
def _one_line_per_retry() -> Iterator[None]:
    """While downloading: the hub client's retry warnings once each, through Proctor's log
    handler only (the hub's own handler would print each a second time)."""
    # Importing the download code installs the hub's handler: do it first, so it is the one
    # taken away below (imported inside the block, it came back and printed every retry twice).
    from huggingface_hub import hf_hub_download  # noqa: F401

    hub = logging.getLogger("huggingface_hub")
    sources = [logging.getLogger(n) for n in ("huggingface_hub.utils._http", "huggingface_hub.hf_api",
                                              "huggingface_hub.file_download")]
    retry_filter = _RetryLines()
    handlers, propagate = hub.handlers[:], hub.propagate
    hub.handlers, hub.propagate = [], True
    for source in sources:
        source.addFilter(retry_filter)
    try:
        yield
    finally:
        for source in sources:
            source.removeFilter(retry_filter)
        hub.handlers, hub.propagate = handlers, propagate


def _download_error(url: str, spec: HubArchive, err: Exception) -> DataError:
    reason = (str(err).strip().splitlines() or [""])[0][:300].rstrip(".")
    offline = " HF_HUB_OFFLINE is set;" if os.environ.get("HF_HUB_OFFLINE") else ""
    return DataError(
        f"could not download {url} (dataset {spec.repo_id}): {type(err).__name__}: {reason};"
        f"{offline} check the network, or set HF_ENDPOINT to a hub mirror (e.g. https://hf-mirror.com),"
        f" or download {spec.filename} yourself, unpack it and pass --data-dir"
    )


def _unpack(archive: Path, data: DataSource, root: Path) -> int:
    """Write the archive's data files into `root` in the first layout; return how many."""
    layout = data.source.layouts[0]
    file_pattern = PurePosixPath(layout).name  # e.g. "{subset}_{split}.csv"
    # (split directory, file name) -> relative target path. Members are matched
    # by their last two path parts, so any top-level folder in the archive works
    # and no member name is ever used as a path (no writing outside `root`).
    targets = {
        (split, file_pattern.format(subset=s, split=split)): layout.format(subset=s, split=split)
        for s in data.subsets
        for split in data.splits
    }
    count = 0
    try:
        for name, open_member in _members(archive):
            parts = PurePosixPath(name).parts
            target = targets.get((parts[-2], parts[-1])) if len(parts) >= 2 else None
            if target is None:
                continue  # not a file of this benchmark (e.g. MMLU auxiliary_train)
            with open_member() as src:
                _write_atomic(root / target, src.read())
            count += 1
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: not a readable archive ({err}); delete it and fetch again") from None
    return count


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(name, opener) for each regular file of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, _zip_opener(zf, info)
        return
    with tarfile.open(archive) as tf:
        for member in tf:
            if member.isfile():
                yield member.name, _tar_opener(tf, member)


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: zf.open(info)


def _tar_opener(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        handle = tf.extractfile(member)
        if handle is None:  # pragma: no cover - isfile() members always have content
            raise tarfile.TarError(f"cannot read {member.name}")
        return handle

    return open_member


def _write_atomic(path: Path, data: bytes) -> None:
    # Write then rename, so an interrupted fetch never leaves a truncated CSV.
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}; choose another destination") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
