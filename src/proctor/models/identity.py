"""A local model's identity: everything its answers depend on, in one string.

The identity prefixes every response-cache key and is recorded in the manifest, so two
checkpoints (or one checkpoint run two ways) must never share one. It covers the whole
weights (a full SHA-256 of every weight file, remembered per file version in the cache
folder so a second run costs nothing), the config and generation config, tokenizer files,
the chat template, the checkpoint's own code, the dtype and the generation settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("proctor.models.identity")

# Files that decide how text becomes tokens and tokens become text.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
# Other tokenizer files by their kind, whatever a tokenizer class names them (a separate
# tokenizer folder's config.json picks the tokenizer class; T5's `spiece.model`,
# XLM-R's `sentencepiece.bpe.model`, Qwen's `qwen.tiktoken`, Mistral's `tokenizer.model.v3`).
TOKENIZER_SUFFIXES = (".json", ".model", ".tiktoken", ".vocab", ".spm", ".txt", ".jinja", ".model.v3")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_DIGESTS_FILE = "weight-digests.json"
_DIGESTS_VERSION = 1
# Settings of a local model's config that change its answers (the rest -- batch size,
# devices, GPUs -- must not; scores do not depend on them). Other helpers add fields here.
_ANSWER_SETTINGS = ("max_seq_len", "chat", "generation_kwargs", "trust_remote_code", "chat_template_kwargs",
                    "reasoning")


def generation_settings(config: Any, **extra: Any) -> dict[str, Any]:
    """The settings of a local model config that change an answer, plus `extra` ones
    (e.g. a served model's chat-template override), as JSON-able data."""
    settings = {name: _plain(getattr(config, name)) for name in _ANSWER_SETTINGS if hasattr(config, name)}
    settings.update(extra)
    return settings


def _plain(value: Any) -> Any:
    """A setting as JSON-able data (a pydantic model as its fields)."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def model_identity(
    kind: str,
    model_dir: Path,
    tok_dir: Path,
    tokenizer: Any,
    dtype: str,
    settings: Mapping[str, Any],
) -> str:
    """'<kind>|<resolved path>|<short hash>|<dtype>': the hash covers every top-level JSON
    file of the checkpoint (config, generation config, weight index), its Python files,
    the tokenizer files, the chat template in use, the full weights and `settings`."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\x00" + hashlib.sha256(data).digest())

    for f in _files(model_dir, (".json", ".py")):
        add("model/" + f.name, f.read_bytes())
    for name in _tokenizer_files(tok_dir, tokenizer):
        add("tokenizer/" + name, (tok_dir / name).read_bytes())
    if tok_dir != model_dir:
        for f in _files(tok_dir, (".py",)):
            add("tokenizer/" + f.name, f.read_bytes())
    add("chat_template", json.dumps(getattr(tokenizer, "chat_template", None), sort_keys=True).encode())
    for name, sha in weight_digests(model_dir).items():
        add("weights/" + name, sha.encode())
    add("settings", json.dumps(dict(settings), sort_keys=True, default=str).encode())
    return f"{kind}|{model_dir}|{digest.hexdigest()[:16]}|{dtype}"


def _tokenizer_files(tok_dir: Path, tokenizer: Any) -> list[str]:
    """The tokenizer's files in `tok_dir`: the usual names, the files its class reads
    (`vocab_files_names`) and any file of a tokenizer kind (sentencepiece, tiktoken, vocabularies)."""
    names = set(TOKENIZER_FILES)
    declared = getattr(tokenizer, "vocab_files_names", None)
    if isinstance(declared, Mapping):
        names.update(v for v in declared.values() if isinstance(v, str))
    names.update(f.name for f in _files(tok_dir, TOKENIZER_SUFFIXES))
    return sorted(n for n in names if "/" not in n and (tok_dir / n).is_file())


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(suffixes))


def weight_digests(model_dir: Path, memo_dir: Path | None = None) -> dict[str, str]:
    """{file name: full SHA-256} of the checkpoint's weight files, hashed in parallel; a
    file version hashed before (same path, size, mtime, ctime, inode) is not read again."""
    files = _files(model_dir, WEIGHT_SUFFIXES)
    memo = _DigestMemo(memo_dir)
    known = {f: memo.get(f) for f in files}
    todo = [f for f, sha in known.items() if sha is None]
    # The version is taken before reading: a file changed while it is hashed is hashed again next time.
    versions = {f: _version(f) for f in todo}
    if todo:
        size = sum(f.stat().st_size for f in todo)
        if size > 1 << 30:
            log.info("hashing %d weight file(s) of %s (%.1f GiB), once per file version", len(todo),
                     model_dir, size / 2**30)
        with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:  # hashlib frees the GIL
            for f, sha in zip(todo, pool.map(_sha256_file, todo)):
                known[f] = sha
                memo.put(f, versions[f], sha)
        memo.save()
    return {f.name: str(known[f]) for f in files}


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _version(path: Path) -> dict[str, int]:
    """What tells one version of a file from another without reading it. ctime is in it
    because `cp -p` over a file keeps its inode, size and mtime but not its ctime."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino, "dev": st.st_dev}


class _DigestMemo:
    """weight-digests.json in the cache folder: {resolved path: version + sha256}.

    Best effort: an unreadable or unwritable memo only means hashing again.
    """

    def __init__(self, memo_dir: Path | None) -> None:
        if memo_dir is None:
            from proctor.cachedir import cache_dir

            memo_dir = cache_dir()
        self.path = memo_dir / _DIGESTS_FILE
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == _DIGESTS_VERSION:
                files = data.get("files")
                self.entries = files if isinstance(files, dict) else {}
        except (OSError, ValueError):
            pass

    def get(self, path: Path) -> str | None:
        entry = self.entries.get(str(path.resolve()))
        if not isinstance(entry, dict):
            return None
        sha = entry.get("sha256")
        if not isinstance(sha, str) or {k: entry.get(k) for k in _version(path)} != _version(path):
            return None
        return sha

    def put(self, path: Path, version: dict[str, int], sha: str) -> None:
        self.entries[str(path.resolve())] = {**version, "sha256": sha}
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        # Drop entries of files that are gone, so the memo does not grow forever.
        live = {p: e for p, e in self.entries.items() if os.path.exists(p)}
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".weight-digests-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": _DIGESTS_VERSION, "files": live}, fh, indent=1)
            os.replace(tmp, self.path)  # another process's memo is replaced whole, never mixed
        except OSError as exc:
            log.debug("cannot remember weight digests in %s: %s", self.path, exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
