"""What a report says about its run: the settings that ran (first screen) and, per benchmark
and model, how the answers are distributed (a model that answers "A" to everything shows it)."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

# Model settings shown in the run's settings table, in this order, when the model has them.
_MODEL_KEYS = ("type", "model", "path", "api_base", "temperature", "max_out_len", "max_seq_len", "batch_size",
               "qps", "max_concurrency", "dtype", "revision")
MAX_ANSWERS = 8  # answers listed per row; the rest are summed as "other"


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _t(value: Any) -> str:
    return escape(str(value), quote=True)


def settings_html(run_dir: Path) -> str:
    """A compact table: command, started, versions, each model's generation settings, datasets."""
    config, manifest = _json(run_dir / "config.json"), _json(run_dir / "manifest.json")
    if not config and not manifest:
        return ""
    rows: list[tuple[str, str]] = []
    command = manifest.get("command")
    if isinstance(command, list):
        rows.append(("command", f"<code>{_t(shlex.join(map(str, command)))}</code>"))
    invocations = manifest.get("invocations") if isinstance(manifest.get("invocations"), list) else []
    if invocations and isinstance(invocations[-1], dict) and invocations[-1].get("started"):
        first = invocations[0].get("started") if isinstance(invocations[0], dict) else None
        when = str(invocations[-1]["started"])
        rows.append(("started", _t(when if first in (None, when) else f"{first} (resumed {when})")))
    proctor = manifest.get("proctor") if isinstance(manifest.get("proctor"), dict) else {}
    libraries = manifest.get("libraries") if isinstance(manifest.get("libraries"), dict) else {}
    versions = [f"proctor {proctor.get('version', '?')}" + (f" ({str(proctor['git_commit'])[:10]})"
                                                            if proctor.get("git_commit") else "")]
    if manifest.get("python"):
        versions.append(f"python {manifest['python']}")
    versions += [f"{k} {v}" for k, v in libraries.items() if k in ("torch", "transformers", "vllm")]
    rows.append(("versions", _t(", ".join(versions))))
    for model in config.get("models") or []:
        if not isinstance(model, dict):
            continue
        name = model.get("abbr") or model.get("model") or model.get("path") or "model"
        settings = ", ".join(f"{k}={model[k]}" for k in _MODEL_KEYS if model.get(k) is not None)
        rows.append((f"model {name}", _t(settings)))
    datasets = config.get("datasets") or []
    if datasets:
        limits = sorted({f"limit {d['limit']}" if d.get("limit") else f"range {d['range']}"
                         for d in datasets if isinstance(d, dict) and (d.get("limit") or d.get("range"))})
        rows.append(("datasets", _t(f"{len(datasets)}" + (f" ({', '.join(limits)})" if limits else ""))))
    body = "".join(f"<tr><th>{_t(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="settings" id="settings">{body}</table>'


def answer_distribution(run_dir: Path) -> str:
    """Per model and benchmark: the extracted answers' counts (and the gold answers'), from scores/."""
    manifest = _json(run_dir / "manifest.json")
    info = manifest.get("datasets") if isinstance(manifest.get("datasets"), dict) else {}
    answers: dict[tuple[str, str], Counter[str]] = {}
    golds: dict[tuple[str, str], Counter[str]] = {}
    for path in sorted((run_dir / "scores").glob("*/*.jsonl")):
        entry = info.get(path.stem) if isinstance(info.get(path.stem), dict) else {}
        benchmark = str(entry.get("benchmark") or path.stem.split("-", 1)[0])
        key = (path.parent.name, benchmark)
        seen, gold = answers.setdefault(key, Counter()), golds.setdefault(key, Counter())
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                score = json.loads(line)
            except ValueError:
                continue
            if not isinstance(score, dict) or score.get("status") != "scored":
                continue
            answer = score.get("answer")
            seen["(no answer)" if answer in (None, "") else str(answer)[:40]] += 1
            if isinstance(score.get("target"), (str, int)):
                gold[str(score["target"])[:40]] += 1
    if not answers:
        return ""
    body = []
    for (model, benchmark), seen in answers.items():
        total = sum(seen.values())
        if not total:
            continue
        top = seen.most_common(MAX_ANSWERS)
        rest = total - sum(c for _, c in top)
        cells = [f"{_t(a)}: {c} ({100 * c / total:.0f}%)" for a, c in top] + ([f"other: {rest}"] if rest else [])
        gold = golds[(model, benchmark)]
        gold_cells = ", ".join(f"{_t(a)}: {100 * c / sum(gold.values()):.0f}%" for a, c in gold.most_common(MAX_ANSWERS))
        body.append(f"<tr><td>{_t(benchmark)}</td><td>{_t(model)}</td><td class='num'>{total}</td>"
                    f"<td>{', '.join(cells)}</td><td class='note'>{gold_cells}</td></tr>")
    return ('<table class="answers"><thead><tr><th>benchmark</th><th>model</th><th>answers</th>'
            "<th>extracted answer (share)</th><th>gold answers</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
