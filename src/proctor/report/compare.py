"""`proctor compare`: two runs (or two models of one run), question by question.

For each dataset both sides scored, and for each group of datasets (their questions pooled,
the mean of questions), the questions both sides answered are paired and tested: the exact
McNemar test for right/wrong scores, a seeded paired bootstrap for other scores (pass@k over
several answers, partial credit); see `proctor.report.stats`. Questions in one side only,
failed or never answered ones, datasets in one side only and manifest differences are
counted and shown, never dropped silently.

A question is a sample: its items (option orders of a circular question, the repeats of a
question asked K times) are folded into one score by the dataset's metric: `circular` counts
it right when every order was right, `pass@k` takes the share of right answers (the pass@1
estimate), anything else (avg@K) the mean item score. A question answered more than once is
tested by the paired bootstrap over questions (its per-question mean is not a right/wrong
outcome); exact McNemar is kept for one answer per question.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from proctor.core import Result, path_part
from proctor.errors import ConfigError, DataError
from proctor.report.manifests import ManifestChange, diff_manifests, measured_changes
from proctor.report.scorelines import read_score_lines
from proctor.report.stats import (
    holm,
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    PairedTest,
    paired_test,
    verdict,
)

COMPARE_JSON = "compare.json"
COMPARE_FORMAT = 1
UnitStatus = Literal["scored", "failed", "missing"]


class CompareError(ConfigError):
    """Runs that cannot be compared as asked (exit 2, one line)."""


# ---------------------------------------------------------------- finding runs and models


_RUN_ID = re.compile(r"(\d{8}_\d{6})(?:_(\d+))?")
_LATEST = re.compile(r"latest(?:~(\d+))?")


def _started(path: Path) -> tuple[str, int, float]:
    """Sort key of a run folder: the start time in its id, else its config's mtime."""
    match = _RUN_ID.fullmatch(path.name)
    if match:
        return match.group(1), int(match.group(2) or 0), 0.0
    config = path / "config.json"
    return "", 0, (config if config.exists() else path).stat().st_mtime


def _is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("config.json", "results", "scores"))


def _runs_in(base: Path) -> list[Path]:
    return sorted((p for p in base.glob("*") if (p / "config.json").is_file()), key=_started) if base.is_dir() else []


def work_dir_of_runs(work_dir: Path | str) -> Path:
    """Where `latest` looks: `work_dir`, or, when it holds no run itself, the one folder in it
    that does (a config's `work_dir = "outputs/demo"`); several such folders are one line."""
    base = Path(work_dir)
    if _runs_in(base) or not base.is_dir():
        return base
    nested = [p for p in sorted(base.iterdir()) if p.is_dir() and _runs_in(p)]
    if len(nested) == 1:
        return nested[0]
    if nested:
        raise CompareError(f"{base} holds no run itself but runs in {', '.join(str(p) for p in nested)}; "
                           "say which with -w")
    return base


def resolve_run(spec: str, work_dir: Path | str = "outputs") -> Path:
    """A run folder from `latest`, `latest~N` (N runs before the latest), a run id under
    `work_dir`, or a folder path."""
    base = Path(work_dir)
    match = _LATEST.fullmatch(spec)
    if match:
        back = int(match.group(1) or 0)
        runs = _runs_in(base)
        if len(runs) <= back:
            raise CompareError(f"{spec}: {base} holds {len(runs)} run(s); give run ids or folders instead")
        return runs[-1 - back]
    for candidate in (base / spec, Path(spec)):
        if _is_run(candidate):
            return candidate
    recent = sorted((p for p in base.glob("*") if (p / "config.json").is_file()), key=_started) if base.is_dir() else []
    known = ", ".join(p.name for p in recent[-5:]) or "none"
    raise CompareError(f"{spec}: no run folder with that id in {base} or at that path (recent runs: {known})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


def read_manifest_file(run: Path) -> dict[str, Any]:
    data = _read_json(run / "manifest.json")
    return dict(data) if isinstance(data, dict) else {}


def run_models(run: Path) -> list[str]:
    """The model names of a run: the manifest's, then any others with results or scores."""
    names: list[str] = list(read_manifest_file(run).get("models") or {})
    folders = {path_part(n) for n in names}
    for path in sorted((run / "results").glob("*/*.json")):
        data = _read_json(path)
        name = data.get("model") if isinstance(data, dict) else None
        if isinstance(name, str) and name not in names and path_part(name) == path.parent.name:
            names.append(name)
            folders.add(path.parent.name)
    for folder in sorted(p.name for p in (run / "scores").glob("*") if p.is_dir()):
        if folder not in folders:
            names.append(folder)
            folders.add(folder)
    return names


def _pick_model(run: Path, name: str, models: Sequence[str]) -> str:
    for model in models:
        if name in (model, path_part(model)):
            return model
    raise CompareError(f"{run.name}: no model {name!r} (models: {', '.join(models) or 'none'})")


def pair_models(a_run: Path, b_run: Path, models: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(model in A, model in B) pairs to compare.

    One run: `models` names its two models (or it has exactly two). Two runs: `models`
    names one model of both, or A's then B's; without it, every model both runs hold,
    or the only model of each.
    """
    a_models, b_models = run_models(a_run), run_models(b_run)
    same = a_run.resolve() == b_run.resolve()
    if len(models) > 2:
        raise CompareError(f"--models takes one or two names, got {len(models)}")
    if same:
        if len(models) == 2:
            return [(_pick_model(a_run, models[0], a_models), _pick_model(a_run, models[1], a_models))]
        if len(models) == 0 and len(a_models) == 2:
            return [(a_models[0], a_models[1])]
        raise CompareError(
            f"one run ({a_run.name}): name the two models to compare with --models A B "
            f"(models: {', '.join(a_models) or 'none'})"
        )
    if len(models) == 2:
        return [(_pick_model(a_run, models[0], a_models), _pick_model(b_run, models[1], b_models))]
    if len(models) == 1:
        return [(_pick_model(a_run, models[0], a_models), _pick_model(b_run, models[0], b_models))]
    common = [m for m in a_models if m in b_models]
    if common:
        return [(m, m) for m in common]
    if len(a_models) == 1 and len(b_models) == 1:
        return [(a_models[0], b_models[0])]
    raise CompareError(
        f"{a_run.name} and {b_run.name} share no model name: name one of each with --models A B "
        f"(A: {', '.join(a_models) or 'none'}; B: {', '.join(b_models) or 'none'})"
    )


# ---------------------------------------------------------------- questions of one side


@dataclass(frozen=True)
class Unit:
    """One question as one side answered it: its items folded into one score in [0, 1]."""

    id: str
    status: UnitStatus
    value: float | None
    answers: tuple[Any, ...]
    target: Any
    draws: int = 1  # answers folded into `value` by their mean (repeats, pass@k answers)


def unit_value(metric: str, lines: Sequence[Mapping[str, Any]]) -> float:
    """The score of a question from its items' score lines, as the dataset's metric counts it."""
    correct = [1.0 if line.get("correct") else 0.0 for line in lines]
    if metric == "circular":
        return 1.0 if all(correct) else 0.0
    if metric.startswith("pass@"):
        return sum(correct) / len(correct)
    values = []
    for line, right in zip(lines, correct):
        value = line.get("value")
        values.append(float(value) if isinstance(value, (int, float)) and math.isfinite(value) else right)
    return sum(values) / len(values)


def load_units(path: Path, metric: str) -> dict[str, Unit]:
    """scores/<model>/<dataset>.jsonl as questions, in file order (the last line of an item wins)."""
    lines = read_score_lines(path)
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for item_id, line in lines.items():
        sample = line.get("sample_id") or item_id
        by_sample.setdefault(str(sample), []).append(line)
    units: dict[str, Unit] = {}
    for sample, group in by_sample.items():
        statuses = {line.get("status", "scored") for line in group}
        status: UnitStatus = "failed" if "failed" in statuses else ("missing" if statuses - {"scored"} else "scored")
        units[sample] = Unit(
            id=sample,
            status=status,
            value=unit_value(metric, group) if status == "scored" else None,
            answers=tuple(line.get("answer") if line.get("status", "scored") == "scored" else f"({line.get('status')})"
                          for line in group),
            target=group[0].get("target"),
            draws=1 if metric == "circular" else len(group),
        )
    return units


@dataclass(frozen=True)
class Side:
    run: Path
    model: str

    @property
    def folder(self) -> str:
        return path_part(self.model)

    @property
    def label(self) -> str:
        return f"{self.run.name} · {self.model}"

    def scores_path(self, dataset: str) -> Path:
        return self.run / "scores" / self.folder / f"{path_part(dataset)}.jsonl"

    def result(self, dataset: str) -> Result | None:
        data = _read_json(self.run / "results" / self.folder / f"{path_part(dataset)}.json")
        return Result.from_json(data) if isinstance(data, dict) else None

    def datasets(self, manifest: Mapping[str, Any]) -> list[str]:
        """Datasets this side has scores or results for, in the manifest's order."""
        found: dict[str, None] = {}
        for path in sorted((self.run / "results" / self.folder).glob("*.json")):
            data = _read_json(path)
            found[str(data.get("dataset", path.stem)) if isinstance(data, dict) else path.stem] = None
        for path in sorted((self.run / "scores" / self.folder).glob("*.jsonl")):
            if not any(path_part(d) == path.stem for d in found):
                found[path.stem] = None
        order = list(manifest.get("datasets") or {})
        return sorted(found, key=lambda d: (order.index(d) if d in order else len(order), d))

    def to_json(self) -> dict[str, Any]:
        return {"run": str(self.run), "run_id": self.run.name, "model": self.model}


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class CompareRow:
    """One dataset or group: the paired test on the questions both sides answered, and the rest counted."""

    name: str
    kind: Literal["dataset", "group"]
    metric: str
    test: PairedTest
    only_a: int  # questions in A's scores only
    only_b: int
    failed_a: int  # questions in both, failed or never answered in A
    failed_b: int
    reported_a: float | None = None  # the side's own score (results/), over all it answered
    reported_b: float | None = None
    members: tuple[str, ...] = ()
    # Per-subject rows of a comparison with several: the Holm-adjusted p, which the verdict uses.
    p_adjusted: float | None = None

    @property
    def verdict(self) -> str:
        if self.p_adjusted is None or self.test.test is None:
            return verdict(self.test)
        return verdict(dataclasses.replace(self.test, p_value=self.p_adjusted))

    def to_json(self) -> dict[str, Any]:
        t = self.test
        return {
            "name": self.name, "kind": self.kind, "metric": self.metric, "members": list(self.members),
            "n": t.n, "a": _pct(t.mean_a), "b": _pct(t.mean_b), "diff": _pct(t.diff),
            "ci_low": _pct(t.ci_low), "ci_high": _pct(t.ci_high),
            "p_value": None if t.test is None else t.p_value, "p_holm": self.p_adjusted,
            "test": t.test, "verdict": self.verdict,
            "b_better": t.b_better, "a_better": t.a_better,
            "only_a": self.only_a, "only_b": self.only_b, "failed_a": self.failed_a, "failed_b": self.failed_b,
            "reported_a": _finite(self.reported_a), "reported_b": _finite(self.reported_b),
        }


def _pct(x: float) -> float | None:
    return None if x is None or math.isnan(x) else 100.0 * x


def _finite(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


@dataclass(frozen=True)
class ChangedItem:
    """A question both sides answered whose score differs."""

    dataset: str
    id: str
    target: Any
    a_value: float
    b_value: float
    a_answers: tuple[Any, ...]
    b_answers: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "id": self.id, "target": self.target, "a_value": self.a_value,
                "b_value": self.b_value, "a_answers": list(self.a_answers), "b_answers": list(self.b_answers)}


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    rows: tuple[CompareRow, ...]
    changes: tuple[ManifestChange, ...]
    datasets_only_a: tuple[str, ...] = ()
    datasets_only_b: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    units: Mapping[str, tuple[Mapping[str, Unit], Mapping[str, Unit]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def measured_changes(self) -> list[ManifestChange]:
        return measured_changes(self.changes)

    def row(self, name: str) -> CompareRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def changed_items(self, name: str) -> list[ChangedItem]:
        """The questions of a dataset (or of a group's members) whose score changed from A to B."""
        if name in self.units:
            datasets = [name]
        else:
            group = next((r for r in self.rows if r.kind == "group" and r.name == name), None)
            if group is None:
                known = ", ".join(self.units) or "none"
                raise CompareError(f"--diff {name}: not a dataset both sides scored (datasets: {known})")
            datasets = list(group.members)
        out = []
        for dataset in datasets:
            ua, ub = self.units[dataset]
            for uid, a in ua.items():
                b = ub.get(uid)
                if b is None or a.value is None or b.value is None or a.value == b.value:
                    continue
                out.append(ChangedItem(dataset, uid, a.target, a.value, b.value, a.answers, b.answers))
        return out

    def to_json(self, diff: Sequence[str] = ()) -> dict[str, Any]:
        data: dict[str, Any] = {
            "a": self.a.to_json(), "b": self.b.to_json(),
            "changes": [c.to_json() for c in self.changes],
            "datasets_only_a": list(self.datasets_only_a), "datasets_only_b": list(self.datasets_only_b),
            "notes": list(self.notes),
            "rows": [row.to_json() for row in self.rows],
        }
        if diff:
            data["diff"] = {name: [c.to_json() for c in self.changed_items(name)] for name in diff}
        return data


def _count(ua: Mapping[str, Unit], ub: Mapping[str, Unit]) -> tuple[list[tuple[str, float, float]], dict[str, int]]:
    paired = []
    counts = {"only_a": 0, "only_b": 0, "failed_a": 0, "failed_b": 0}
    for uid, a in ua.items():
        b = ub.get(uid)
        if b is None:
            counts["only_a"] += 1
            continue
        if a.status != "scored":
            counts["failed_a"] += 1
        if b.status != "scored":
            counts["failed_b"] += 1
        if a.value is not None and b.value is not None:
            paired.append((uid, a.value, b.value))
    counts["only_b"] = sum(1 for uid in ub if uid not in ua)
    return paired, counts


def _row(name: str, kind: Literal["dataset", "group"], metric: str,
         parts: Sequence[tuple[Mapping[str, Unit], Mapping[str, Unit]]], *, members: tuple[str, ...] = (),
         reported: tuple[float | None, float | None] = (None, None), resamples: int, seed: int) -> CompareRow:
    a_values: list[float] = []
    b_values: list[float] = []
    totals = {"only_a": 0, "only_b": 0, "failed_a": 0, "failed_b": 0}
    # Several answers per question (repeats): each question is its mean over them, tested by the
    # paired bootstrap over questions; McNemar only for one right/wrong answer per question.
    exact = all(u.draws == 1 for ua, ub in parts for side in (ua, ub) for u in side.values())
    for ua, ub in parts:
        paired, counts = _count(ua, ub)
        a_values.extend(x for _, x, _ in paired)
        b_values.extend(y for _, _, y in paired)
        for key, value in counts.items():
            totals[key] += value
    test = paired_test(a_values, b_values, resamples=resamples, seed=seed, exact=exact)
    return CompareRow(name, kind, metric, test, members=members, reported_a=reported[0], reported_b=reported[1],
                      **totals)


# ---------------------------------------------------------------- groups


def read_groups(run: Path, manifest: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The run's summary groups (summary/groups.json, written with the summary); for older runs,
    one group per benchmark and mode from the manifest (when it has two datasets or more)."""
    data = _read_json(run / "summary" / "groups.json")
    if isinstance(data, dict) and isinstance(data.get("groups"), dict):
        return [(str(name), tuple(map(str, members))) for name, members in data["groups"].items()
                if isinstance(members, list)]
    by_key: dict[tuple[str, str, str], list[str]] = {}
    for abbr, info in (manifest.get("datasets") or {}).items():
        if isinstance(info, dict) and info.get("benchmark"):
            key = (str(info["benchmark"]), str(info.get("mode", "")), str(info.get("variants", "")))
            by_key.setdefault(key, []).append(abbr)
    styles: dict[str, int] = {}
    for benchmark, _, _ in by_key:
        styles[benchmark] = styles.get(benchmark, 0) + 1
    groups = []
    for (benchmark, mode, variants), members in by_key.items():
        if len(members) >= 2:
            extra = [x for x in (mode, variants if variants not in ("", "none") else "") if x]
            name = benchmark if styles[benchmark] == 1 else f"{benchmark} ({', '.join(extra)})"
            groups.append((name, tuple(members)))
    return groups


def _group_rows(groups: Iterable[tuple[str, tuple[str, ...]]], rows: Mapping[str, CompareRow],
                units: Mapping[str, tuple[Mapping[str, Unit], Mapping[str, Unit]]],
                reported: Mapping[str, tuple[Result | None, Result | None]], *, resamples: int,
                seed: int) -> list[CompareRow]:
    out: list[CompareRow] = []
    seen: set[tuple[str, ...]] = set()
    names: set[str] = set()
    for name, members in groups:
        present = tuple(m for m in members if m in units)
        if len(present) < 2 or present in seen or name in names:
            continue
        seen.add(present)
        names.add(name)
        metrics = {rows[m].metric for m in present}
        base = metrics.pop() if len(metrics) == 1 else "score"

        def pooled(side: int) -> float | None:
            results = [reported[m][side] for m in present]
            if any(r is None or r.n == 0 or math.isnan(r.value) for r in results):
                return None
            return sum(r.value * r.n for r in results) / sum(r.n for r in results)  # type: ignore[union-attr]

        out.append(_row(name, "group", f"{base} (mean of questions)", [units[m] for m in present],
                        members=present, reported=(pooled(0), pooled(1)), resamples=resamples, seed=seed))
    return out


# ---------------------------------------------------------------- comparing


def compare_sides(a: Side, b: Side, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                  strict: bool = False) -> Comparison:
    """Compare side B against side A on every dataset both scored, then on their groups."""
    manifest_a, manifest_b = read_manifest_file(a.run), read_manifest_file(b.run)
    a_sets, b_sets = a.datasets(manifest_a), b.datasets(manifest_b)
    common = [d for d in a_sets if d in b_sets]
    notes: list[str] = []
    for side, manifest in (("A", manifest_a), ("B", manifest_b)):
        if not manifest:
            notes.append(f"{side} ({(a if side == 'A' else b).run.name}) has no manifest.json: its data, prompts "
                         "and scorer could not be checked")
    checked = [*common, *(d for d in dict.fromkeys([*a_sets, *b_sets]) if d not in common)]
    changes = diff_manifests(manifest_a, manifest_b, datasets=checked, models=[(a.model, b.model)])
    # A dataset missing from one side is reported in datasets_only_*; keep the manifest's view of coverage only
    # for the datasets both sides scored.
    changes = [c for c in changes if not (c.kind == "coverage" and c.where.endswith(": dataset"))]
    if strict and measured_changes(changes):
        first = measured_changes(changes)
        more = f" (and {len(first) - 1} more)" if len(first) > 1 else ""
        raise CompareError(
            f"--strict: A and B do not measure the same thing: {first[0].message}{more}; "
            "drop --strict to compare anyway"
        )
    units: dict[str, tuple[Mapping[str, Unit], Mapping[str, Unit]]] = {}
    rows: dict[str, CompareRow] = {}
    reported: dict[str, tuple[Result | None, Result | None]] = {}
    for dataset in common:
        ra, rb = a.result(dataset), b.result(dataset)
        paths = (a.scores_path(dataset), b.scores_path(dataset))
        missing = [side for side, path in zip("AB", paths) if not path.is_file()]
        if missing:
            notes.append(f"{dataset}: no scores in {' and '.join(missing)} (run `proctor run --mode eval -r RUN`); "
                         "not compared")
            continue
        metric_a = ra.metric if ra else "accuracy"
        metric_b = rb.metric if rb else metric_a
        if metric_a != metric_b:
            notes.append(f"{dataset}: A is scored by {metric_a}, B by {metric_b}; each question is counted by A's")
        ua, ub = load_units(paths[0], metric_a), load_units(paths[1], metric_a)
        units[dataset] = (ua, ub)
        reported[dataset] = (ra, rb)
        rows[dataset] = _row(dataset, "dataset", metric_a, [(ua, ub)],
                             reported=(ra.value if ra else None, rb.value if rb else None),
                             resamples=resamples, seed=seed)
    groups = [*read_groups(a.run, manifest_a), *read_groups(b.run, manifest_b)]
    group_rows = _group_rows(groups, rows, units, reported, resamples=resamples, seed=seed)
    tested = [name for name, row in rows.items() if row.test.test is not None]
    if len(tested) > 1:
        # Many subjects tested at 5% each call some "better" by chance: their verdicts use Holm's
        # adjustment over the family; the benchmark-level (group) rows come first, unadjusted.
        for name, p in zip(tested, holm([rows[n].test.p_value for n in tested])):
            rows[name] = dataclasses.replace(rows[name], p_adjusted=p)
    return Comparison(
        a=a, b=b, rows=(*group_rows, *rows.values()), changes=tuple(changes),
        datasets_only_a=tuple(d for d in a_sets if d not in b_sets),
        datasets_only_b=tuple(d for d in b_sets if d not in a_sets),
        notes=tuple(notes), units=units,
    )


def compare_runs(a_run: Path | str, b_run: Path | str, models: Sequence[str] = (), *, strict: bool = False,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[Comparison]:
    """One Comparison per model pair (see `pair_models`)."""
    a_path, b_path = Path(a_run), Path(b_run)
    return [compare_sides(Side(a_path, ma), Side(b_path, mb), resamples=resamples, seed=seed, strict=strict)
            for ma, mb in pair_models(a_path, b_path, models)]


def later_run(a_run: Path, b_run: Path) -> Path:
    """The run started later (by its id's time stamp, else its config's mtime)."""
    return max((a_run, b_run), key=_started)


# ---------------------------------------------------------------- output


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:+.2f}"


def format_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


COLUMNS = ("dataset", "metric", "n", "A", "B", "B-A", "95% CI", "p", "p (Holm)", "test", "verdict",
           "B>A", "A>B", "only A", "only B", "failed A", "failed B")
NUMERIC = {"n", "A", "B", "B-A", "p", "p (Holm)", "B>A", "A>B", "only A", "only B", "failed A", "failed B"}


def row_cells(row: CompareRow) -> list[str]:
    t = row.test
    ci = "-" if t.test is None else f"[{_signed(100 * t.ci_low)}, {_signed(100 * t.ci_high)}]"
    return [
        row.name, row.metric, str(t.n), _num(_pct(t.mean_a)), _num(_pct(t.mean_b)), _signed(_pct(t.diff)), ci,
        format_p(None if t.test is None else t.p_value), format_p(row.p_adjusted), t.test or "-", row.verdict,
        str(t.b_better), str(t.a_better), str(row.only_a), str(row.only_b), str(row.failed_a), str(row.failed_b),
    ]


LEGEND = (
    "n: questions both sides answered (A and B are their scores on those, in percent; B-A with its 95% "
    "interval). p: exact McNemar test for one right/wrong answer per question, else (several answers "
    "per question, --repeats: each question's mean over its repeats; partial credit) a paired bootstrap over "
    f"questions ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}); verdict at the {ALPHA:g} level. "
    "B>A / A>B: questions where B / A scored higher. only A / only B: questions one side has no line for; "
    "failed A / failed B: questions both have, failed or never answered by that side. "
    "Groups pool their members' questions (mean of questions) and come first: they are the benchmark-level "
    "verdicts. With several datasets, each dataset's verdict uses its p adjusted for the number of datasets "
    "tested (Holm, column p (Holm)), so 52 subjects do not call 2 or 3 of them better by chance. "
    "The interval of a right/wrong difference is the exact one that goes with McNemar's test (Clopper-Pearson "
    "on the changed questions): it excludes 0 exactly when p < 0.05; a bootstrap row's is the bootstrap's."
)


def _header(c: Comparison) -> list[str]:
    lines = [f"A: {c.a.label}  ({c.a.run})", f"B: {c.b.label}  ({c.b.run})"]
    measured = c.measured_changes
    if measured:
        lines.append("WARNING: A and B do not measure the same thing:")
        lines.extend(f"  ! {change.message}" for change in measured)
    # Two different models differ in identity by design; the same model in two runs should not.
    shown = ("coverage", "setting", "model") if c.a.model == c.b.model else ("coverage", "setting")
    others = [x for x in c.changes if x.kind in shown]
    if others:
        lines.append("Other differences:")
        lines.extend(f"  - {change.message}" for change in others)
    if c.datasets_only_a:
        lines.append(f"Datasets in A only (not compared): {', '.join(c.datasets_only_a)}")
    if c.datasets_only_b:
        lines.append(f"Datasets in B only (not compared): {', '.join(c.datasets_only_b)}")
    lines.extend(f"Note: {note}" for note in c.notes)
    return lines


def _aligned(columns: Sequence[str], body: Sequence[Sequence[str]], numeric: set[int]) -> list[str]:
    from rich.cells import cell_len

    widths = [max(cell_len(cell) for cell in col) for col in zip(columns, *body)]

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            pad = " " * (width - cell_len(cell))
            parts.append(pad + cell if i in numeric else cell + pad)
        return "  ".join(parts).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(cells) for cells in body)]


def _answers(values: Sequence[Any]) -> str:
    return " | ".join("-" if v is None else str(v) for v in values)


def _diff_cells(item: ChangedItem) -> list[str]:
    return [item.dataset, item.id, _cell_text(item.target), _num(item.a_value), _cell_text(_answers(item.a_answers)),
            _num(item.b_value), _cell_text(_answers(item.b_answers))]


DIFF_COLUMNS = ("dataset", "id", "target", "A score", "A answer", "B score", "B answer")


def _cell_text(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_compare_text(comparisons: Sequence[Comparison], diff: Sequence[str] = ()) -> str:
    blocks = []
    numeric = {i for i, c in enumerate(COLUMNS) if c in NUMERIC}
    for c in comparisons:
        lines = _header(c)
        lines.append("")
        if c.rows:
            lines.extend(_aligned(COLUMNS, [row_cells(r) for r in c.rows], numeric))
        else:
            lines.append("No dataset scored by both sides.")
        for name in diff:
            items = c.changed_items(name)
            lines.append("")
            lines.append(f"Questions of {name} whose score changed ({len(items)}):")
            if items:
                lines.extend(_aligned(DIFF_COLUMNS, [_diff_cells(i) for i in items], {3, 5}))
        blocks.append("\n".join(lines))
    return "\n\n".join([*blocks, LEGEND]) + "\n"


def _md(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_compare_markdown(comparisons: Sequence[Comparison], diff: Sequence[str] = ()) -> str:
    out = ["# Comparison", ""]
    for c in comparisons:
        out.append(f"## B = {_md(c.b.label)} vs A = {_md(c.a.label)}")
        out.append("")
        out.extend(f"- {_md(line.strip())}" for line in _header(c)[2:])
        out.append("")
        align = ["---:" if col in NUMERIC else "---" for col in COLUMNS]
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("| " + " | ".join(align) + " |")
        out.extend("| " + " | ".join(_md(x) for x in row_cells(r)) + " |" for r in c.rows)
        for name in diff:
            items = c.changed_items(name)
            out += ["", f"### {_md(name)}: questions whose score changed ({len(items)})", ""]
            out.append("| " + " | ".join(DIFF_COLUMNS) + " |")
            out.append("| " + " | ".join("---" for _ in DIFF_COLUMNS) + " |")
            out.extend("| " + " | ".join(_md(x) for x in _diff_cells(i)) + " |" for i in items)
        out.append("")
    out.append(_md(LEGEND))
    return "\n".join(out) + "\n"


def format_compare_csv(comparisons: Sequence[Comparison]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = ["name", "kind", "metric", "n", "a", "b", "diff", "ci_low", "ci_high", "p_value", "p_holm", "test", "verdict",
            "b_better", "a_better", "only_a", "only_b", "failed_a", "failed_b", "reported_a", "reported_b"]
    writer.writerow(["a_run", "a_model", "b_run", "b_model", *keys])
    for c in comparisons:
        for row in c.rows:
            data = row.to_json()
            writer.writerow([c.a.run.name, c.a.model, c.b.run.name, c.b.model,
                             *("" if data[k] is None else data[k] for k in keys)])
    return buffer.getvalue()


def compare_json(comparisons: Sequence[Comparison], diff: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "proctor_compare": COMPARE_FORMAT,
        "alpha": ALPHA,
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED},
        "comparisons": [c.to_json(diff) for c in comparisons],
    }


def write_compare(comparisons: Sequence[Comparison], directory: Path | str, diff: Sequence[str] = ()) -> list[Path]:
    """compare.json, compare.md and compare.csv in `directory`; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        COMPARE_JSON: json.dumps(compare_json(comparisons, diff), ensure_ascii=False, indent=1, default=str) + "\n",
        "compare.md": format_compare_markdown(comparisons, diff),
        "compare.csv": format_compare_csv(comparisons),
    }
    paths = []
    for name, text in texts.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
