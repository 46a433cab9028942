"""What the user sees while a run works: rich progress bars, or log lines with --debug."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from proctor.core import Record
from proctor.engine.plan import Task
from proctor.engine.task import TaskStats

log = logging.getLogger("proctor.engine")

# Task bars drawn at once (more run behind them, counted on their model's bar), and redraws per
# second: on 2 cores, 57 bars redrawn 10 times a second cost a quarter of a local model's run.
MAX_TASK_BARS = 8
REFRESH_PER_SECOND = 2
# With --debug, the overall line is logged at most this often (and at least this often while
# requests are slow to come back: a 0.16 QPS run is not minutes of silence).
OVERALL_EVERY_S = 10.0


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Overall:
    """Items done of all, requests per second, ETA and failures over the whole run."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.sent = 0  # answered by a request (not cached, not resumed): what req/s counts
        self.failed = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.sent / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        # A rate from the first request or two (a rate limiter's burst) would promise too much.
        steady = self.sent >= 3 or elapsed >= 30
        eta = "0:00" if left <= 0 else (_clock(left / rate) if rate > 0 and steady else "-")
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"all: {self.done:,}/{self.total:,} items{share}, {rate:.2f} req/s, ETA {eta}{failed}"


class RunProgress:
    """One bar per (model, dataset) while it runs (at most MAX_TASK_BARS shown), above one
    overall bar per model that counts the tasks running; with `debug`, log lines instead."""

    def __init__(self, plan: Sequence[Task], *, debug: bool, console: Any = None) -> None:
        self._failed: dict[str, int] = {}
        self._bars: dict[str | Task, Any] = {}
        self._totals: dict[str, int] = {}
        for task in plan:
            self._totals[task.model] = self._totals.get(task.model, 0) + task.size
        self._progress: Any = None
        self._running: dict[str, int] = {}
        self._shown: set[Task] = set()
        self.overall = Overall(sum(self._totals.values()))
        self._said = 0.0  # when the overall line was last logged (--debug)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if not debug:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]}"),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
                refresh_per_second=REFRESH_PER_SECOND,
            )

    def __enter__(self) -> "RunProgress":
        if self._progress is not None:
            self._progress.__enter__()
            # The overall line first, above every model's and task's bar.
            self._bars["__all__"] = self._progress.add_task(self.overall.line(), total=self.overall.total, failed="")
            for model, total in self._totals.items():
                self._bars[model] = self._progress.add_task(f"[bold]{model}", total=total, failed="")
        else:
            self._heartbeat = threading.Thread(target=self._beat, name="proctor-progress", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif self.overall.done:
            log.info("%s", self.overall.line())

    def _beat(self) -> None:
        """--debug: the overall line while nothing else is said (slow or rate-limited requests)."""
        while not self._stop.wait(OVERALL_EVERY_S):
            if time.monotonic() - self._said >= OVERALL_EVERY_S:
                self._say()

    def _say(self) -> None:
        self._said = time.monotonic()
        log.info("%s", self.overall.line())

    def _count(self, record: Record) -> None:
        self.overall.done += 1
        self.overall.sent += not record.cached
        self.overall.failed += record.failed
        if self._progress is not None:
            self._progress.update(self._bars["__all__"], advance=1, description=self.overall.line())
        elif time.monotonic() - self._said >= OVERALL_EVERY_S:
            self._say()

    def _describe(self, model: str) -> None:
        running = self._running.get(model, 0)
        label = f"[bold]{model}" + (f" ({running} tasks running)" if running > 1 else "")
        self._progress.update(self._bars[model], description=label)

    def start(self, task: Task) -> None:
        if self._progress is not None:
            visible = len(self._shown) < MAX_TASK_BARS
            if visible:
                self._shown.add(task)
            self._bars[task] = self._progress.add_task(f"  {task.label}", total=task.size, failed="", visible=visible)
            self._running[task.model] = self._running.get(task.model, 0) + 1
            self._describe(task.model)
        else:
            log.info("start %s (%d sample%s)", task.label, task.size, "" if task.size == 1 else "s")

    def advance(self, task: Task, record: Record) -> None:
        self._count(record)
        if record.failed:
            self._failed[task.model] = self._failed.get(task.model, 0) + 1
            log.warning("%s: item %s failed: %s", task.label, record.item_id, record.error)
        if self._progress is not None:
            failed = self._failed.get(task.model, 0)
            self._progress.update(self._bars[task], advance=1)
            self._progress.update(self._bars[task.model], advance=1, failed=f"[red]{failed} failed" if failed else "")
        else:
            answer = record.output if record.output is not None else record.loglikelihoods
            log.info(
                "%s %s: %s -> %.80r",
                task.label,
                record.item_id,
                "cached" if record.cached else f"{record.latency_s:.2f}s",
                answer,
            )

    def finish(self, task: Task, stats: TaskStats) -> None:
        if self._progress is not None:
            # Samples already done (resume) complete the bars too.
            self._progress.update(self._bars[task], advance=stats.skipped, visible=False)
            self._progress.update(self._bars[task.model], advance=stats.skipped)
        self.overall.done += stats.skipped
        if self._progress is not None:
            self._progress.update(self._bars["__all__"], advance=stats.skipped, description=self.overall.line())
            self._shown.discard(task)
            self._running[task.model] -= 1
            self._describe(task.model)
        else:
            log.info(
                "done %s: sent %d, cached %d, already done %d, failed %d in %.2fs",
                task.label,
                stats.sent,
                stats.cached,
                stats.skipped,
                stats.failed,
                stats.seconds,
            )
