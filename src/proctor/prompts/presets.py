"""Prompt presets by name: how a Sample becomes a Request (multiple choice, free form, ...).

A spec names its preset (`prompt.preset`); the loader checks the name against this registry,
and a plugin can add one with `register_preset` before specs are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from proctor.core import Request
from proctor.prompts import free_form, multiple_choice
from proctor.prompts.wording import Wording
from proctor.registry import Registry


@dataclass(frozen=True)
class Preset:
    """`multiple_choice`: its questions have options (ppl mode, circular variants make sense).
    `version(wording, kind, continuations)` is the summary's version hash; `build(sample, shots,
    **settings)` the Request (settings as `PromptPlan.request` passes them)."""

    name: str
    multiple_choice: bool
    version: Callable[[Wording, str, str], str]
    build: Callable[..., Request]


_PRESETS: Registry[Preset] = Registry("prompt preset")


def register_preset(preset: Preset) -> Preset:
    return _PRESETS.add(preset.name, preset)


def preset_names() -> list[str]:
    return _PRESETS.names()


def get_preset(name: str) -> Preset:
    """The preset `name`; ConfigError (one line, with close matches) when there is none."""
    return _PRESETS.get(name)


def _mc_build(sample: Any, shots: Any, **settings: Any) -> Request:
    return multiple_choice.build_request(sample, shots, **settings)


def _free_build(sample: Any, shots: Any, *, kind: str, continuations: str, **settings: Any) -> Request:
    return free_form.build_request(sample, shots, **settings)


register_preset(Preset("multiple_choice", True, multiple_choice.version, _mc_build))
register_preset(Preset("free_form", False, lambda wording, kind, continuations: free_form.version(wording),
                       _free_build))
