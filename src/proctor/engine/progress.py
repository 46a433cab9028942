"""What the user sees while a run works: rich progress bars, or log lines with --debug."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from proctor.core import Record
from proctor.engine.plan import Task
from proctor.engine.task import TaskStats

log = logging.getLogger("proctor.engine")


class RunProgress:
    """One bar per (model, dataset) while it runs, above one overall bar per model;
    with `debug`, a log line per task and per sample instead."""

    def __init__(self, plan: Sequence[Task], *, debug: bool, console: Any = None) -> None:
        self._failed: dict[str, int] = {}
        self._bars: dict[str | Task, Any] = {}
        self._totals: dict[str, int] = {}
        for task in plan:
            self._totals[task.model] = self._totals.get(task.model, 0) + task.size
        self._progress: Any = None
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
            )

    def __enter__(self) -> "RunProgress":
        if self._progress is not None:
            self._progress.__enter__()
            for model, total in self._totals.items():
                self._bars[model] = self._progress.add_task(f"[bold]{model}", total=total, failed="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, task: Task) -> None:
        if self._progress is not None:
            self._bars[task] = self._progress.add_task(f"  {task.label}", total=task.size, failed="")
        else:
            log.info("start %s (%d sample%s)", task.label, task.size, "" if task.size == 1 else "s")

    def advance(self, task: Task, record: Record) -> None:
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
