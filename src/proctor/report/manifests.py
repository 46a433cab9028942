"""What differs between two manifests (manifest.json), and whether it changes what is measured.

Used by `proctor compare` (is the comparison fair?) and by the engine when `-r` resumes a
run whose data or prompts changed since it started. Pure functions over the manifests'
JSON data: no file is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Iterable, Literal, Mapping, Sequence

# measure: the numbers are not of the same test (prompt, data, scorer, few-shot, mode, variants);
# coverage: not the same questions (n, items, a dataset in one manifest only);
# setting: the same test asked differently (requests as sent, seed);
# model: what identifies the model (expected to differ when two models are compared);
# environment: Proctor and library versions.
ChangeKind = Literal["measure", "coverage", "setting", "model", "environment"]
KIND_ORDER: tuple[ChangeKind, ...] = ("measure", "coverage", "setting", "model", "environment")

# Fields of manifest["datasets"][abbr] that decide what a score measures.
_MEASURED_FIELDS = {
    "prompt_version": "prompt version",
    "fewshot": "few-shot examples",
    "mode": "mode",
    "variants": "variants",
}
_COVERAGE_FIELDS = {"n": "questions", "items": "items"}
_SCORER_MEASURED = {"name": "scorer", "version": "scorer version", "params": "scorer parameters"}
_MODEL_FIELDS = (
    "identity", "type", "chat", "api_type", "model_id", "path", "settings_sha256",
    "config_sha256", "tokenizer_sha256", "chat_template_sha256", "weights",
)


@dataclass(frozen=True)
class ManifestChange:
    """One difference: `where` names it (`ceval-law: prompt version`), `old`/`new` the two values."""

    kind: ChangeKind
    where: str
    old: Any
    new: Any
    note: str = ""

    @property
    def measures(self) -> bool:
        """True when the difference changes what is measured (the scores are not comparable)."""
        return self.kind == "measure"

    @property
    def message(self) -> str:
        text = f"{self.where}: {_show(self.old)} -> {_show(self.new)}"
        return f"{text} ({self.note})" if self.note else text

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "old": self.old, "new": self.new,
                "note": self.note, "message": self.message}


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256
    if isinstance(value, (dict, list)):
        import json

        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= 120 else text[:117] + "..."
    return str(value)


def _data_file_changes(abbr: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[ManifestChange]:
    """Files are matched by content hash, then by file name: the same bytes at another path is no change."""
    if sorted(old.values()) == sorted(new.values()):
        return []
    changes = []
    old_by_name = {PurePath(p).name: (p, h) for p, h in old.items()}
    new_by_name = {PurePath(p).name: (p, h) for p, h in new.items()}
    old_hashes, new_hashes = set(old.values()), set(new.values())
    for name in sorted(set(old_by_name) | set(new_by_name)):
        o, n = old_by_name.get(name), new_by_name.get(name)
        if o and n:
            if o[1] != n[1]:
                changes.append(ManifestChange("measure", f"{abbr}: data file {name}", o[1], n[1],
                                              "different contents"))
        elif o and o[1] not in new_hashes:
            changes.append(ManifestChange("measure", f"{abbr}: data file {name}", o[1], None, "not read by the other"))
        elif n and n[1] not in old_hashes:
            changes.append(ManifestChange("measure", f"{abbr}: data file {name}", None, n[1], "not read by the other"))
    if not changes:  # same names, hashes moved between them
        changes.append(ManifestChange("measure", f"{abbr}: data files", sorted(old.values()), sorted(new.values())))
    return changes


def _dataset_changes(abbr: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ManifestChange]:
    changes: list[ManifestChange] = []
    for key, label in _MEASURED_FIELDS.items():
        if key in old and key in new and old[key] != new[key]:
            changes.append(ManifestChange("measure", f"{abbr}: {label}", old[key], new[key]))
    old_scorer, new_scorer = old.get("scorer") or {}, new.get("scorer") or {}
    for key, label in _SCORER_MEASURED.items():
        if key in old_scorer and key in new_scorer and old_scorer[key] != new_scorer[key]:
            changes.append(ManifestChange("measure", f"{abbr}: {label}", old_scorer[key], new_scorer[key]))
    if old_scorer.get("environment") != new_scorer.get("environment") and "environment" in old_scorer \
            and "environment" in new_scorer:
        changes.append(ManifestChange("setting", f"{abbr}: scorer environment", old_scorer["environment"],
                                      new_scorer["environment"]))
    if isinstance(old.get("data_files"), Mapping) and isinstance(new.get("data_files"), Mapping):
        changes.extend(_data_file_changes(abbr, old["data_files"], new["data_files"]))
    for key, label in _COVERAGE_FIELDS.items():
        if key in old and key in new and old[key] != new[key]:
            changes.append(ManifestChange("coverage", f"{abbr}: {label}", old[key], new[key],
                                          "items in one run only are counted apart"))
    return changes


def _model_changes(label: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ManifestChange]:
    return [
        ManifestChange("model", f"{label}: {key}", old.get(key), new.get(key))
        for key in _MODEL_FIELDS
        if (key in old or key in new) and old.get(key) != new.get(key)
    ]


def diff_manifests(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    datasets: Iterable[str] | None = None,
    models: Sequence[tuple[str, str]] | None = None,
) -> list[ManifestChange]:
    """The differences between two manifests, those that change what is measured first.

    `datasets`: the dataset abbrs to check (default: every abbr of either manifest; one in
    only one manifest is a `coverage` change). `models`: pairs (model in `old`, model in
    `new`) to check (default: the model names both hold). Requests as sent
    (`requests_sha256`) are compared for those models on the datasets both hold with the
    same number of items. An empty manifest (none written) gives no change.
    """
    if not old or not new:
        return []
    old_ds: Mapping[str, Any] = old.get("datasets") or {}
    new_ds: Mapping[str, Any] = new.get("datasets") or {}
    names = list(datasets) if datasets is not None else list(dict.fromkeys([*old_ds, *new_ds]))
    changes: list[ManifestChange] = []
    for abbr in names:
        if abbr in old_ds and abbr in new_ds:
            changes.extend(_dataset_changes(abbr, old_ds[abbr], new_ds[abbr]))
        elif abbr in old_ds or abbr in new_ds:
            changes.append(ManifestChange("coverage", f"{abbr}: dataset", "present" if abbr in old_ds else None,
                                          "present" if abbr in new_ds else None))

    old_models: Mapping[str, Any] = old.get("models") or {}
    new_models: Mapping[str, Any] = new.get("models") or {}
    pairs = list(models) if models is not None else [(m, m) for m in old_models if m in new_models]
    same_items = [a for a in names if a in old_ds and a in new_ds and old_ds[a].get("items") == new_ds[a].get("items")]
    for old_name, new_name in pairs:
        label = old_name if old_name == new_name else f"{old_name} vs {new_name}"
        if old_name in old_models and new_name in new_models:
            changes.extend(_model_changes(f"model {label}", old_models[old_name], new_models[new_name]))
        old_req = (old.get("requests_sha256") or {}).get(old_name) or {}
        new_req = (new.get("requests_sha256") or {}).get(new_name) or {}
        for abbr in same_items:
            if abbr in old_req and abbr in new_req and old_req[abbr] != new_req[abbr]:
                changes.append(ManifestChange("setting", f"{abbr}: requests sent to {label}", old_req[abbr],
                                              new_req[abbr], "prompts or generation settings differ"))
    if old.get("seed") != new.get("seed") and "seed" in old and "seed" in new:
        changes.append(ManifestChange("setting", "seed", old["seed"], new["seed"]))
    old_version = (old.get("proctor") or {}).get("version")
    new_version = (new.get("proctor") or {}).get("version")
    if old_version != new_version:
        changes.append(ManifestChange("environment", "proctor version", old_version, new_version))
    old_libs, new_libs = old.get("libraries") or {}, new.get("libraries") or {}
    for lib in sorted(set(old_libs) | set(new_libs)):
        if old_libs.get(lib) != new_libs.get(lib):
            changes.append(ManifestChange("environment", f"library {lib}", old_libs.get(lib), new_libs.get(lib)))
    return sorted(changes, key=lambda c: KIND_ORDER.index(c.kind))


def measured_changes(changes: Iterable[ManifestChange]) -> list[ManifestChange]:
    """Only the changes that alter what is measured (prompt, data, scorer, few-shot, mode, variants)."""
    return [c for c in changes if c.measures]
