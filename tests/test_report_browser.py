"""report.html in a real browser: a real run (two models, real datasets, the test server), then
headless Chromium opens the page over the DevTools protocol (on a pipe, standard library only)
and checks the headline table, the charts, the comparison and the per-sample drill-down render,
with no console error and no network request; it saves a full-page screenshot.

Chromium is found as `chromium` (Debian), `chromium-browser`, `google-chrome` or $PROCTOR_CHROMIUM;
.ci/run installs it. $PROCTOR_SCREENSHOT_DIR keeps a copy of the screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import KnownAnswers, dataset_names, slice_fixtures
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

SUBJECTS = [("ceval", "computer_network", "val"), ("ceval", "computer_architecture", "val"),
            ("mmlu", "abstract_algebra", "test")]
LIMIT = 12
CIRCULAR = "mmlu-abstract_algebra_circular"
MODELS = ("model-a", "model-b")

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def find_chromium() -> str | None:
    candidates = [os.environ.get("PROCTOR_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome",
                  "google-chrome-stable", "/usr/bin/chromium"]
    for name in candidates:
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = [
    needs_shared_data,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install -y chromium; .ci/run does)"),
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]


class DevTools:
    """Chromium driven over --remote-debugging-pipe: JSON messages ending in NUL on fds 3 (in) and 4 (out)."""

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_pipes() -> None:  # in the child, before exec: the pipes become fds 3 and 4
            read_end = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=wire_pipes, close_fds=False,  # other fds are non-inheritable (PEP 446)
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium exited (code {self.proc.poll()}); see its log")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_child, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read(deadline))

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session)
        if "exceptionDetails" in result:
            raise AssertionError(f"the check script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


class TwoModels:
    """model-a answers like KnownAnswers (about 2 in 3 right); model-b answers every question right."""

    def __init__(self, answers: KnownAnswers) -> None:
        self.answers = answers

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        sample = self.answers.sample_for(prompt)
        if body["model"] == "model-b":
            # Find the target's text among the options as asked (circular runs reorder them).
            text = sample.option(sample.target)
            for line in prompt.splitlines():
                if line[1:3] == ". " and line[3:].strip() == text.strip():
                    return f"答案：{line[0]}"
            return f"答案：{sample.target}"
        return self.answers(body)


# What the page must show, measured by the browser itself (layout boxes, not the HTML text).
CHECKS = """(async () => {
  const tick = () => new Promise(r => setTimeout(r, 50));
  for (let i = 0; i < 100 && document.documentElement.dataset.samples !== 'ready'; i++) await tick();
  const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  // checkVisibility: false inside a closed <details> (its content is skipped, not just clipped).
  const visible = el => { const [w, h] = box(el); return w > 0 && h > 0 && el.checkVisibility(); };
  const headline = document.querySelector('table.headline.benchmark');
  const headlineRows = headline ? [...headline.querySelectorAll('tbody tr')].map(
      tr => [...tr.children].map(td => td.textContent.trim())) : [];
  const firstH2 = document.querySelector('h2');
  const settings = document.querySelector('table.settings');
  const settingsText = settings ? settings.textContent : '';
  const settingsTop = settings ? settings.getBoundingClientRect().top : 1e9;
  const comparison = document.querySelector('details#comparison');
  const comparisonClosed = comparison ? !comparison.open : false;
  const comparisonSummary = comparison ? comparison.querySelector('summary').textContent : '';
  const compareHiddenBefore = [...document.querySelectorAll('table.compare')].filter(visible).length;
  if (comparison) comparison.open = true;
  const answers = [...document.querySelectorAll('table.answers tbody tr')].map(
      tr => [...tr.children].map(td => td.textContent.trim()));
  const charts = [...document.querySelectorAll('svg.chart')];
  const bars = [...document.querySelectorAll('svg.chart rect.bar')];
  const samples = [...document.querySelectorAll('details.ds')];
  const sampleRows = () => [...document.querySelectorAll('details.ds tbody tr')];
  const hiddenBefore = sampleRows().filter(visible).length;
  const builtBefore = sampleRows().length;
  samples.forEach(d => { d.open = true; });
  await tick(); await tick();
  const shownAfter = sampleRows().filter(visible).length;
  const firstOutput = document.querySelector('details.ds tbody tr td:nth-child(4)');
  // The filters: wrong only, then a text search.
  const set = (id, value) => { const el = document.getElementById(id); el.value = value;
                               el.dispatchEvent(new Event('input')); };
  set('f-status', 'wrong');
  const wrongRows = [...document.querySelectorAll('#f-results tbody tr')];
  const wrongOnly = wrongRows.length > 0 && wrongRows.every(tr => tr.className === 'wrong');
  const wrongCount = document.getElementById('f-count').textContent;
  const sectionsHidden = samples.every(d => !visible(d));
  set('f-status', '');
  set('f-dataset', 'mmlu-abstract_algebra');
  const datasetRows = [...document.querySelectorAll('#f-results tbody tr')].map(tr => tr.children[0].textContent);
  set('f-dataset', '');
  set('f-text', 'zzzz-no-such-text');
  const noMatch = document.getElementById('f-count').textContent;
  set('f-text', '');
  const sectionsBack = samples.every(d => !d.hidden);
  return {
    title: document.title,
    firstHeading: firstH2 ? firstH2.textContent : null,
    headlineVisible: headline ? visible(headline) : false,
    headlineRows,
    charts: charts.length,
    chartsVisible: charts.filter(visible).length,
    bars: bars.length,
    barsDrawn: bars.filter(b => b.getBBox().width > 0).length,
    errorBars: [...document.querySelectorAll('svg.chart path.errbar')].filter(visible).length,
    diffDots: [...document.querySelectorAll('svg.diff circle.dot')].filter(visible).length,
    compareRows: [...document.querySelectorAll('table.compare tbody tr')].map(
        tr => [tr.children[0].textContent.trim(), tr.querySelector('td.verdict').textContent.trim()]),
    groupTable: !!document.querySelector('table.headline.group, table.headline.subset'),
    samples: samples.length,
    sampleRowsHiddenBefore: hiddenBefore,
    sampleRowsShownAfter: shownAfter,
    sampleRowsTotal: sampleRows().length,
    firstOutput: firstOutput ? firstOutput.textContent : null,
    settingsText, settingsTop, comparisonClosed, comparisonSummary, compareHiddenBefore, answers,
    builtBefore, wrongOnly, wrongCount, sectionsHidden, datasetRows, noMatch, sectionsBack,
    scripts: document.scripts.length,
    pageHeight: document.documentElement.scrollHeight,
  };
})()"""


def _make_run(work: Path, slices: dict[str, list]) -> Path:
    answers = KnownAnswers.of_slices(slices)
    with OpenAIServer(TwoModels(answers), model_ids=list(MODELS)) as server:
        config = work.parent / "two_models.yaml"
        config.write_text(
            "models:\n" + "".join(f"  - {{type: api, api_base: '{server.base_url}', model: {m}}}\n" for m in MODELS),
            encoding="utf-8",
        )
        argv = ["run", str(config), "--datasets", *dataset_names(SUBJECTS), CIRCULAR, "--limit", str(LIMIT),
                "--data-dir", str(SHARED_DATASETS), "-w", str(work), "--no-cache"]
        assert main(argv) == 0
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    assert main(["compare", str(run), "--models", *MODELS]) == 0
    assert (run / "compare.json").is_file()
    return run


def test_report_renders_in_headless_chromium(tmp_path: Path, slices: dict[str, list]) -> None:
    assert CHROMIUM is not None
    run = _make_run(tmp_path / "outputs", slices)
    report = run / "report.html"
    url = report.resolve().as_uri()

    browser = DevTools(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Page.navigate", {"url": url}, session)
        browser.wait_for("Page.loadEventFired")
        page = browser.evaluate(session, CHECKS)
        metrics = browser.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width, height = int(size["width"]), int(min(size["height"], 12000))
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        }, session, timeout=30)
        events = list(browser.events)
    finally:
        browser.close()

    # Nothing went wrong in the page, and it fetched nothing but itself.
    errors = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    errors += [e["params"] for e in events
               if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert")]
    errors += [e["params"]["entry"] for e in events
               if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"]
    assert errors == [], errors
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert requests == [url], requests
    assert page["scripts"] == 2  # the samples' data block and the script that draws them, nothing fetched

    # The headline first: one row per benchmark and model, with a score and a 95% interval.
    assert page["title"] == f"Proctor report · {run.name}"
    assert page["firstHeading"] == "Headline" and page["headlineVisible"]
    names = [row[0] for row in page["headlineRows"]]
    assert names == ["ceval (2/52 subjects)"] * 2 + ["mmlu-abstract_algebra"] * 2 + [CIRCULAR] * 2
    assert [row[2] for row in page["headlineRows"]] == list(MODELS) * 3
    for row in page["headlineRows"]:
        assert row[3].replace(".", "").isdigit() and " – " in row[4], row
    b_rows = [row for row in page["headlineRows"] if row[2] == "model-b" and row[0] != CIRCULAR]
    assert all(row[3] == "100.00" for row in b_rows)
    assert page["groupTable"]

    # Charts drawn with bars and error bars; the comparison with its verdicts and difference chart.
    assert page["charts"] >= 3 and page["chartsVisible"] == page["charts"]
    assert page["bars"] > 0 and page["barsDrawn"] >= page["bars"] - 2
    assert page["errorBars"] > 0 and page["diffDots"] >= 4
    verdicts = dict(page["compareRows"])
    assert set(verdicts) >= {*dataset_names(SUBJECTS), CIRCULAR, "ceval (2/52 subjects)"}
    assert verdicts["ceval (2/52 subjects)"] == "B better"

    # The run's settings on the first screen; the comparison collapsed, naming both sides.
    assert page["settingsTop"] < 900
    assert "proctor run" in page["settingsText"] and "temperature=" in page["settingsText"]
    assert "model model-a" in page["settingsText"] and "model model-b" in page["settingsText"]
    assert page["comparisonClosed"] and page["compareHiddenBefore"] == 0
    assert "model-a" in page["comparisonSummary"] and "model-b" in page["comparisonSummary"]
    assert "ceval (2/52 subjects): B better" in page["comparisonSummary"]
    # Answer distribution per benchmark and model.
    assert {(row[0], row[1]) for row in page["answers"]} >= {("ceval", m) for m in MODELS}

    # The drill-down: closed at first and drawn only when opened (lazily), every record shown then.
    assert page["samples"] == 2 * 4
    assert page["sampleRowsHiddenBefore"] == 0 and page["builtBefore"] == 0
    assert page["sampleRowsShownAfter"] == page["sampleRowsTotal"] == 2 * (3 * LIMIT + 4 * LIMIT)
    assert page["firstOutput"] and "答案" in page["firstOutput"]
    # Filters over every sample: wrong only, by dataset, by text; clearing them brings the lists back.
    assert page["wrongOnly"] and "sample(s) match" in page["wrongCount"] and page["sectionsHidden"]
    assert len(page["datasetRows"]) == 2 * LIMIT and all("mmlu-abstract_algebra #" in r for r in page["datasetRows"])
    assert page["noMatch"].startswith("0 sample(s) match") and page["sectionsBack"]

    # A real, non-trivial screenshot of the whole page.
    png = base64.b64decode(shot["data"])
    shot_path = tmp_path / "report.png"
    shot_path.write_bytes(png)
    w, h = png_size(png)
    assert w >= 1000 and h >= 1500 and len(png) > 50_000, (w, h, len(png))
    keep = os.environ.get("PROCTOR_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, Path(keep) / "report.png")
        shutil.copy(report, Path(keep) / "report.html")


FULL_CHECKS = """(async () => {
  const tick = () => new Promise(r => setTimeout(r, 50));
  for (let i = 0; i < 200 && document.documentElement.dataset.samples !== 'ready'; i++) await tick();
  const sections = [...document.querySelectorAll('details.ds')];
  const before = document.querySelectorAll('details.ds tbody tr').length;
  sections[0].open = true;
  await tick(); await tick();
  const first = sections[0].querySelectorAll('tbody tr').length;
  const status = document.getElementById('f-status');
  status.value = 'wrong'; status.dispatchEvent(new Event('input'));
  return {ready: document.documentElement.dataset.samples, sections: sections.length, before, first,
          count: document.getElementById('f-count').textContent};
})()"""


def test_a_full_ceval_report_is_small_and_loads_its_samples_lazily(tmp_path: Path) -> None:
    """All 1,346 C-Eval questions with their prompts: under 1 MB (3.6 MB as HTML rows before)."""
    assert CHROMIUM is not None
    work = tmp_path / "outputs"
    with OpenAIServer(lambda body: "答案是A") as server:
        assert main(["run", "--api-base", server.base_url, "--datasets", "ceval_gen", "--data-dir",
                     str(SHARED_DATASETS), "-w", str(work), "--no-cache"]) == 0
    (run,) = [p for p in work.iterdir() if (p / "config.json").is_file()]
    report = run / "report.html"
    assert report.stat().st_size < 1_000_000, report.stat().st_size
    browser = DevTools(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        page = browser.evaluate(session, FULL_CHECKS)
        events = list(browser.events)
    finally:
        browser.close()
    errors = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    assert errors == [], errors
    assert page["ready"] == "ready" and page["sections"] == 52 and page["before"] == 0
    first = json.loads((run / "results" / "test-model" / "ceval-computer_network.json").read_text(encoding="utf-8"))
    assert page["first"] == first["n"] + first["n_failed"]
    wrong = sum(1 for p in (run / "scores" / "test-model").glob("*.jsonl")
                for line in p.read_text(encoding="utf-8").splitlines() if '"correct":false' in line)
    assert page["count"].startswith(f"{wrong} sample(s) match")
