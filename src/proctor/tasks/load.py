"""Reading spec files: the built-in ones shipped in `tasks/builtin/` and a user's own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from pydantic import ValidationError

from proctor.errors import ConfigError
from proctor.tasks.spec import TaskSpec

BUILTIN_DIR = Path(__file__).parent / "builtin"


def spec_from_dict(data: Any, where: str) -> TaskSpec:
    """A validated TaskSpec; ConfigError names `where` and the key of the first problem."""
    if data is None:
        raise ConfigError(f"{where}: the spec is empty; it needs at least `name` and `source`")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a task spec must be a mapping, got {type(data).__name__}")
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_line(exc, where)) from None


def _validation_line(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _close_keys(error["loc"])
        problems.append(f"{key}: {message}" if key else message)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {problems[0]}{more}" if len(problems) == 1 else f"{where}: " + "; ".join(problems)


def _close_keys(loc: tuple[Any, ...]) -> str:
    """`; did you mean: prompt?` for a misspelt key, from the keys of the section it is in."""
    from proctor.config.suggest import did_you_mean

    from typing import get_origin

    model: Any = TaskSpec
    keyed = False  # the next part is a key of a mapping (`texts: {en: ...}`), not a field
    for part in loc[:-1]:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = _model_in(field.annotation)
        if model is None:
            return ""
        keyed = get_origin(field.annotation) is dict
    return did_you_mean(str(loc[-1]), getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation holds (`X`, `tuple[X, ...]`, `X | None`, `dict[str, X]`), or None."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_spec_file(path: str | Path) -> TaskSpec:
    """A spec from a YAML (or JSON) file; layouts starting `./` or `../` are relative to its folder."""
    import yaml

    from proctor.yamlfile import load_yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"task spec {path} does not exist")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{at} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return _anchored(spec_from_dict(data, str(path)), path.parent)


def _anchored(spec: TaskSpec, folder: Path) -> TaskSpec:
    """Layouts (of the data and of joined files) and hook files written `./x` or `../x` are
    relative to the spec file; other layouts to the data roots."""

    def anchor(layout: str) -> str:
        return str((folder / layout).resolve()) if layout.startswith(("./", "../")) else layout

    source = spec.source
    layouts = tuple(anchor(layout) for layout in source.layouts)
    joins = tuple(j.model_copy(update={"layout": anchor(j.layout)}) for j in source.joins)
    update: dict[str, Any] = {}
    if layouts != source.layouts or joins != source.joins:
        update["source"] = source.model_copy(update={"layouts": layouts, "joins": joins})
    def anchored_hook(fields: Any) -> Any:
        hook = fields.hook
        if hook is None or not hook.startswith(("./", "../")):
            return fields
        module, _, function = hook.rpartition(":")
        return fields.model_copy(update={"hook": f"{anchor(module)}:{function}"})

    if anchored_hook(spec.fields) is not spec.fields:
        update["fields"] = anchored_hook(spec.fields)
    subsets = tuple(s.model_copy(update={"fields": anchored_hook(s.fields)})
                    if s.fields is not None and anchored_hook(s.fields) is not s.fields else s for s in spec.subsets)
    if any(a is not b for a, b in zip(subsets, spec.subsets)):
        update["subsets"] = subsets
    return spec.model_copy(update=update) if update else spec


@lru_cache(maxsize=1)
def builtin_specs() -> Mapping[str, TaskSpec]:
    """Every built-in spec by name, in file-name order."""
    specs: dict[str, TaskSpec] = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        spec = load_spec_file(path)
        if spec.name != path.stem:
            raise ConfigError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
        specs[spec.name] = spec
    return MappingProxyType(specs)
