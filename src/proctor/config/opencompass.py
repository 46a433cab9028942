"""OpenCompass config files as their users write them.

While Proctor runs a Python config file, `opencompass.*` and `mmengine` imports resolve to
Proctor's equivalents (a `sys.meta_path` finder installed for that load only; nothing is
installed under those names and every module it made is removed afterwards):

- `opencompass.models`: the model classes (`OpenAISDK`, `HuggingFacewithChatTemplate`, ...),
  which `config.models` maps to Proctor's kinds;
- `mmengine.config.read_base` (also `mmengine.read_base`): inside `with read_base():`, an import
  of a config module (`from ..cmmlu.cmmlu_gen_c13365 import cmmlu_datasets`) loads the file of
  that name relative to the config when it exists, else OpenCompass's config of that name
  (`ceval_gen`, `cmmlu_gen_c13365`, `hf_internlm2_5_1_8b_chat`, ...) as Proctor has it: dataset
  and model dicts in OpenCompass's shape, which the config may edit;
- `opencompass.configs.datasets...`/`opencompass.configs.models...`: the same configs by
  absolute name; any other `opencompass.*` name (retrievers, inferencers, evaluators) is a
  placeholder, so a full OpenCompass config loads; a dataset Proctor does not have is refused
  where it is used.

`dataset_from_opencompass` turns an (edited) dataset dict back into Proctor's dataset config:
the edits Proctor honours (`abbr`, `reader_cfg.test_range`, the retriever's few-shot count,
the inferencer's `max_out_len`) are applied; any other edit is refused with one line.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import importlib.abc
import importlib.machinery
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

from proctor.config.suggest import close_matches
from proctor.errors import ConfigError

# ---------------------------------------------------------------- placeholders and classes


class OpenCompassName:
    """A class or function of OpenCompass's that a config names (a retriever, an evaluator...)."""


class OpenCompassModel(OpenCompassName):
    """An OpenCompass model class (`type=OpenAISDK`): `config.models` maps it by its name."""


class OpenCompassDataset(OpenCompassName):
    """An OpenCompass dataset class; `benchmark` is the Proctor benchmark it loads."""

    benchmark = ""


_PLACEHOLDERS: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str, base: type = OpenCompassName, **attrs: Any) -> type:
    """One class per (module, name), the same object on every load, so edits can be told apart."""
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(name, (base,), {"__module__": module, **attrs})
    return _PLACEHOLDERS[key]


def _model_class_names() -> list[str]:
    from proctor.config.models import OPENCOMPASS_TYPES

    return list(OPENCOMPASS_TYPES)


# Proctor benchmark -> (OpenCompass dataset class, its `path`, its config folder, variable prefix).
_BENCHMARKS: dict[str, tuple[str, str, str, str]] = {
    "ceval": ("CEvalDataset", "opencompass/ceval-exam", "ceval", "ceval"),
    "cmmlu": ("CMMLUDataset", "opencompass/cmmlu", "cmmlu", "cmmlu"),
    "mmlu": ("MMLUDataset", "opencompass/mmlu", "mmlu", "mmlu"),
    "gsm8k": ("GSM8KDataset", "opencompass/gsm8k", "gsm8k", "gsm8k"),
    "bbh": ("BBHDataset", "opencompass/bbh", "bbh", "bbh"),
    "humaneval": ("HumanevalDataset", "opencompass/humaneval", "humaneval", "humaneval"),
    "math500": ("MATHDataset", "opencompass/math", "math", "math"),
}


def _dataset_class(benchmark: str) -> type:
    return _placeholder("opencompass.datasets", _BENCHMARKS[benchmark][0], OpenCompassDataset, benchmark=benchmark)


# OpenCompass's dataset config modules (file stem -> Proctor dataset name). The hashes name
# OpenCompass's prompt variants; Proctor runs each benchmark with its own prompt.
_HASHES: dict[str, tuple[str, ...]] = {
    "ceval_gen": ("5f30c7", "2daf24"),
    "ceval_ppl": ("578f8d", "1cd8bf", "93e5ce"),
    "cmmlu_gen": ("c13365",),
    "cmmlu_ppl": ("8b9c76", "041cbf"),
    "mmlu_gen": ("4d595a", "23a9a9", "5d1409", "79e572", "a484b3"),
    "mmlu_ppl": ("ac766d",),
    "gsm8k_gen": ("1d7fe4", "17d0dc", "1dce88", "3309bd", "57b0b1", "701491", "a3e34a", "d6de81", "e9e91e", "ee684f"),
    "bbh_gen": ("5b92b0", "2879b0", "5bf00b", "98fba6"),
    "humaneval_gen": ("8e312c", "4a6eef", "6d1cc2", "66a7f4", "a82cae", "d2537e", "fd5822"),
}
_PROCTOR_NAME = {"gsm8k_gen": "gsm8k", "humaneval_gen": "humaneval"}


def _dataset_modules() -> dict[str, tuple[str, str]]:
    """OpenCompass dataset config stem -> (Proctor dataset name, the variable it defines)."""
    table: dict[str, tuple[str, str]] = {}
    for stem, hashes in _HASHES.items():
        benchmark = stem.rsplit("_", 1)[0]
        entry = (_PROCTOR_NAME.get(stem, stem), f"{_BENCHMARKS[benchmark][3]}_datasets")
        table[stem] = entry
        for h in hashes:
            table[f"{stem}_{h}"] = entry
    for stem in ("math_prm800k_500_gen", "math_prm800k_500_0shot_cot_gen", "math_500_gen"):
        table[stem] = ("math500", "math_datasets")
    return table


DATASET_MODULES = _dataset_modules()

# OpenCompass's model config modules that Proctor has (file stem -> its `models`).
_MODEL_MODULES: dict[str, dict[str, Any]] = {
    "hf_internlm2_5_1_8b_chat": dict(type="HuggingFacewithChatTemplate", abbr="internlm2_5-1_8b-chat-hf",
                                     path="internlm/internlm2_5-1_8b-chat", max_out_len=1024, batch_size=8,
                                     run_cfg=dict(num_gpus=1)),
    "hf_internlm2_5_7b_chat": dict(type="HuggingFacewithChatTemplate", abbr="internlm2_5-7b-chat-hf",
                                   path="internlm/internlm2_5-7b-chat", max_out_len=1024, batch_size=8,
                                   run_cfg=dict(num_gpus=1)),
    "lmdeploy_internlm2_5_1_8b_chat": dict(type="TurboMindModelwithChatTemplate", abbr="internlm2_5-1_8b-chat-turbomind",
                                           path="internlm/internlm2_5-1_8b-chat", max_seq_len=8192, max_out_len=2048,
                                           batch_size=16, run_cfg=dict(num_gpus=1)),
    "hf_qwen2_5_0_5b_instruct": dict(type="HuggingFacewithChatTemplate", abbr="qwen2.5-0.5b-instruct-hf",
                                     path="Qwen/Qwen2.5-0.5B-Instruct", max_out_len=4096, batch_size=8,
                                     run_cfg=dict(num_gpus=1)),
    "hf_qwen2_5_7b_instruct": dict(type="HuggingFacewithChatTemplate", abbr="qwen2.5-7b-instruct-hf",
                                   path="Qwen/Qwen2.5-7B-Instruct", max_out_len=4096, batch_size=8,
                                   run_cfg=dict(num_gpus=1)),
}
MODEL_MODULES = tuple(_MODEL_MODULES)


def known_modules() -> list[str]:
    """Every OpenCompass config module name Proctor has."""
    return [*DATASET_MODULES, *_MODEL_MODULES]


def proctor_dataset_name(name: str) -> str | None:
    """Proctor's dataset name for an OpenCompass config name (`cmmlu_gen_c13365` -> `cmmlu_gen`)."""
    entry = DATASET_MODULES.get(name)
    return entry[0] if entry else None


def models_of_module(stem: str) -> list[dict[str, Any]] | None:
    """The `models` of an OpenCompass model config Proctor has (fresh dicts), or None."""
    if stem not in _MODEL_MODULES:
        return None
    entry = copy.deepcopy(_MODEL_MODULES[stem])
    entry["type"] = _placeholder("opencompass.models", entry["type"], OpenCompassModel)
    return [entry]


def _module_namespace(stem: str) -> dict[str, Any] | None:
    """What `from <...>.<stem> import *` gives, or None when Proctor does not have it."""
    if stem in DATASET_MODULES:
        name, variable = DATASET_MODULES[stem]
        return {variable: datasets_in_opencompass_shape(name)}
    models = models_of_module(stem)
    return {"models": models} if models is not None else None


def _unknown_module(shown: str, stem: str, looked: Path | None = None) -> ConfigError:
    close = close_matches(stem, known_modules(), n=3)
    hint = f"closest known: {', '.join(close)}" if close else "see `proctor list` for the names it has"
    where = f"there is no file {looked} and " if looked else ""
    return ConfigError(f"`{shown}`: {where}Proctor has no OpenCompass config of that name; {hint}")


# ---------------------------------------------------------------- datasets in OpenCompass's shape


def _oc_dataset(config: Any) -> dict[str, Any]:
    """The OpenCompass dataset dict of one of Proctor's dataset configs."""
    from proctor.tasks import spec_of

    spec = spec_of(config)
    placeholder = lambda module, name: _placeholder(f"opencompass.openicl.{module}", name)  # noqa: E731
    shots = spec.prompt.fewshot if spec.splits.fewshot else 0
    retriever: dict[str, Any] = (
        dict(type=placeholder("icl_retriever", "FixKRetriever"), fix_id_list=list(range(shots)))
        if shots else dict(type=placeholder("icl_retriever", "ZeroRetriever"))
    )
    inferencer = "PPLInferencer" if config.mode == "ppl" else "GenInferencer"
    entry: dict[str, Any] = dict(type=_dataset_class(config.benchmark), path=_BENCHMARKS[config.benchmark][1])
    if config.subject:
        entry["name"] = config.subject
    entry.update(
        abbr=config.abbr,
        reader_cfg=dict(
            input_columns=["question", *("ABCD" if spec.multiple_choice else "")],
            output_column="answer",
            **({"train_split": spec.splits.fewshot} if spec.splits.fewshot else {}),
            test_split=spec.splits.eval,
        ),
        infer_cfg=dict(retriever=retriever, inferencer=dict(type=placeholder("icl_inferencer", inferencer))),
        eval_cfg=dict(evaluator=dict(type=placeholder("icl_evaluator", "AccEvaluator"))),
    )
    return entry


def datasets_in_opencompass_shape(name: str) -> list[dict[str, Any]]:
    """OpenCompass's `<benchmark>_datasets` for a Proctor dataset name: one dict per subset."""
    from proctor.tasks import resolve_datasets

    return [_oc_dataset(c) for c in resolve_datasets([name])]


def is_opencompass_dataset(entry: Any) -> bool:
    return isinstance(entry, dict) and (
        isinstance(entry.get("type"), type) and issubclass(entry["type"], OpenCompassName)
        or "reader_cfg" in entry or "infer_cfg" in entry
    )


def _differences(mine: Any, theirs: Any, path: str = "") -> list[str]:
    """Dotted paths where `theirs` differs from `mine`."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        out: list[str] = []
        for key in [*mine, *(k for k in theirs if k not in mine)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in theirs or key not in mine:
                out.append(sub)
            else:
                out += _differences(mine[key], theirs[key], sub)
        return out
    return [] if mine == theirs else [path]


_HONOURED = ("abbr", "reader_cfg.test_range", "infer_cfg.retriever", "infer_cfg.inferencer.max_out_len")


def dataset_from_opencompass(entry: dict[str, Any], where: str) -> Any:
    """The DatasetConfig an (edited) OpenCompass dataset dict stands for; an edit Proctor
    cannot honour is refused, never ignored."""
    from pydantic import ValidationError

    from proctor.config.models import validation_message
    from proctor.tasks import resolve_datasets

    kind = entry.get("type")
    if not (isinstance(kind, type) and issubclass(kind, OpenCompassDataset)):
        shown = getattr(kind, "__name__", kind)
        raise ConfigError(
            f"{where}: an OpenCompass dataset of type {shown!r}, which Proctor does not have; use a Proctor "
            "dataset name (`proctor list datasets`), an OpenCompass config Proctor has (ceval_gen, cmmlu_gen, ...) "
            "or a data file (./my.jsonl)"
        )
    inferencer = ((entry.get("infer_cfg") or {}).get("inferencer") or {}).get("type")
    ppl = getattr(inferencer, "__name__", "") == "PPLInferencer"
    name = kind.benchmark
    if entry.get("name"):
        name = f"{name}-{entry['name']}"
    if ppl:
        name += "_ppl"
    try:
        (config,) = resolve_datasets([name])
    except (ConfigError, ValueError):
        raise ConfigError(f"{where}: {kind.__name__} has no subset {entry.get('name')!r}") from None
    pristine = _oc_dataset(config)
    changed = _differences(pristine, entry)
    refused = [c for c in changed if not any(c == h or c.startswith(h + ".") for h in _HONOURED)]
    if refused:
        raise ConfigError(
            f"{where} ({entry.get('abbr', config.abbr)}): {refused[0]} was changed, which Proctor cannot honour "
            f"(it runs {config.benchmark} with its own prompt and scorer); change only "
            "abbr, reader_cfg.test_range, infer_cfg.retriever (few-shot) or infer_cfg.inferencer.max_out_len"
        )
    update: dict[str, Any] = {}
    if entry.get("abbr") != config.abbr:
        update["abbr"] = entry.get("abbr")
    test_range = (entry.get("reader_cfg") or {}).get("test_range")
    if test_range is not None:
        from proctor.config.ranges import parse_range

        parse_range(str(test_range), where=f"{where}.reader_cfg.test_range")
        update["range"] = str(test_range)
    retriever = (entry.get("infer_cfg") or {}).get("retriever")
    if retriever != pristine["infer_cfg"]["retriever"]:
        update["fewshot"] = _fewshot(retriever, f"{where}.infer_cfg.retriever")
    max_out_len = ((entry.get("infer_cfg") or {}).get("inferencer") or {}).get("max_out_len")
    if max_out_len is not None:
        update["max_out_len"] = max_out_len
    if not update:
        return config
    try:
        return type(config).model_validate({**config.model_dump(exclude_unset=True), **update})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where)) from None


def _fewshot(retriever: Any, where: str) -> int:
    name = getattr((retriever or {}).get("type") if isinstance(retriever, dict) else None, "__name__", "")
    if name == "ZeroRetriever" and set(retriever) == {"type"}:
        return 0
    ids = retriever.get("fix_id_list") if name == "FixKRetriever" else None
    if isinstance(ids, list) and ids == list(range(len(ids))) and set(retriever) == {"type", "fix_id_list"}:
        return len(ids)
    raise ConfigError(
        f"{where}: Proctor takes the first k examples of the few-shot split; use "
        "dict(type=FixKRetriever, fix_id_list=[0, ..., k-1]) or dict(type=ZeroRetriever)"
    )


# ---------------------------------------------------------------- the import hook


class _Package(types.ModuleType):
    """A package of placeholders: any public name it is asked for is a placeholder class."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(self.__name__, attr)


class _Models(types.ModuleType):
    """`opencompass.models`: the model classes Proctor maps; any other name is one line."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        names = _model_class_names()
        if attr in names:
            return _placeholder("opencompass.models", attr, OpenCompassModel)
        close = close_matches(attr, names, n=3)
        hint = f"closest: {', '.join(close)}" if close else f"it maps {', '.join(names)}"
        raise ConfigError(f"`opencompass.models.{attr}` is not a model class Proctor runs; {hint}")


class _Configs(types.ModuleType):
    """`opencompass.configs[...]`: folders whose names are imported as they are asked for."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        import importlib

        return importlib.import_module(f"{self.__name__}.{attr}")


class read_base(contextlib.ContextDecorator):  # noqa: N801 (mmengine's name)
    """mmengine's `read_base()`: the imports inside it are config modules (see the module doc)."""

    def __enter__(self) -> "read_base":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_LOOKS_LIKE_A_CONFIG = re.compile(r"(_gen|_ppl)(_[0-9a-f]{6})?$|^(hf|vllm|lmdeploy)_.*[0-9]")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `opencompass*` and `mmengine*` imports while a config loads."""

    ROOTS = ("opencompass", "mmengine")

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in self.ROOTS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        name = spec.name
        parts = name.split(".")
        module: types.ModuleType
        if parts[0] == "mmengine":
            module = types.ModuleType(name)
            module.read_base = read_base  # type: ignore[attr-defined]
        elif name == "opencompass.models":
            module = _Models(name)
        elif parts[:2] == ["opencompass", "configs"]:
            namespace = _module_namespace(parts[-1]) if len(parts) > 2 else None
            if namespace is None and len(parts) > 2 and _LOOKS_LIKE_A_CONFIG.search(parts[-1]):
                raise _unknown_module(name, parts[-1])
            module = _Configs(name)
            if namespace is not None:
                module.__dict__.update(namespace)
        elif name == "opencompass.datasets":
            module = _Package(name)
            for benchmark in _BENCHMARKS:
                setattr(module, _BENCHMARKS[benchmark][0], _dataset_class(benchmark))
        else:
            module = _Package(name)
        module.__path__ = []  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


@contextlib.contextmanager
def opencompass_imports() -> Iterator[None]:
    """OpenCompass and mmengine imports resolve to Proctor's equivalents inside this block only."""
    owned = [n for n in sys.modules if n.split(".", 1)[0] in _Finder.ROOTS]
    saved = {n: sys.modules.pop(n) for n in owned}  # a real install is put back afterwards
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".", 1)[0] in _Finder.ROOTS]:
            del sys.modules[name]
        sys.modules.update(saved)


# ---------------------------------------------------------------- running a config file


def _is_read_base(node: ast.With) -> bool:
    for item in node.items:
        call = item.context_expr
        func = call.func if isinstance(call, ast.Call) else None
        if isinstance(func, ast.Name) and func.id == "read_base" or isinstance(func, ast.Attribute) and func.attr == "read_base":
            return True
    return False


class _BaseImports(ast.NodeTransformer):
    """`from <config module> import names` inside `with read_base():` -> `names = __base__(...)`."""

    def visit_With(self, node: ast.With) -> Any:
        self.generic_visit(node)
        if not _is_read_base(node):
            return node
        body: list[ast.stmt] = []
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and (stmt.level or (stmt.module or "").startswith("opencompass.configs")):
                for alias in stmt.names:
                    call = ast.Call(
                        func=ast.Name("__proctor_base__", ast.Load()),
                        args=[ast.Constant(stmt.module or ""), ast.Constant(stmt.level), ast.Constant(alias.name),
                              ast.Constant(stmt.lineno)],
                        keywords=[],
                    )
                    if alias.name == "*":
                        body.append(ast.Expr(call))
                    else:
                        body.append(ast.Assign([ast.Name(alias.asname or alias.name, ast.Store())], call))
            else:
                body.append(stmt)
        node.body = body or [ast.Pass()]
        return node


def run_python_config(path: Path, read_text: Callable[[Path], str]) -> dict[str, Any]:
    """The top-level names of a Python config after running it with the OpenCompass imports."""
    with opencompass_imports():
        return _Loader(read_text).run(path.resolve())


class _Loader:
    def __init__(self, read_text: Callable[[Path], str]) -> None:
        self.read_text = read_text
        self.loaded: dict[Path, dict[str, Any]] = {}
        self.virtual: dict[str, dict[str, Any]] = {}
        self.stack: list[Path] = []

    def run(self, path: Path) -> dict[str, Any]:
        if path in self.stack:
            raise ConfigError(f"{path.name}: imports itself through {' -> '.join(p.name for p in self.stack)}")
        if path in self.loaded:
            return self.loaded[path]
        source = self.read_text(path)
        tree = ast.fix_missing_locations(_BaseImports().visit(ast.parse(source, filename=str(path))))
        namespace: dict[str, Any] = {"__name__": "__proctor_config__", "__file__": str(path), "__builtins__": builtins}
        namespace["__proctor_base__"] = lambda module, level, name, line: self.base(path, namespace, module, level, name, line)
        self.stack.append(path)
        folder = str(path.parent)
        sys.path.insert(0, folder)  # `from models_cfg import models` beside the config, as before
        try:
            exec(compile(tree, str(path), "exec"), namespace)  # noqa: S102 (the user's own config)
        finally:
            self.stack.pop()
            if folder in sys.path:
                sys.path.remove(folder)
        self.loaded[path] = namespace
        return namespace

    def base(self, path: Path, into: dict[str, Any], module: str, level: int, name: str, line: int) -> Any:
        """What one name of a read_base import is (a `*` import fills `into`)."""
        shown = "." * level + module
        parts = [p for p in module.split(".") if p]
        looked: Path | None = None
        namespace: dict[str, Any] | None = None
        if level:
            folder = path.parent
            for _ in range(level - 1):
                folder = folder.parent
            looked = folder.joinpath(*parts).with_suffix(".py") if parts else None
            if looked is not None and looked.is_file():
                namespace = self.run(looked)
        else:
            parts = parts[2:]  # opencompass.configs.<...>
        if namespace is None:
            stem = parts[-1] if parts else name
            if stem not in self.virtual:
                found = _module_namespace(stem)
                if found is None:
                    raise ConfigError(f"{path.name}: line {line}: {_unknown_module(shown, stem, looked)}")
                self.virtual[stem] = found
            namespace = self.virtual[stem]
        if name == "*":
            into.update({k: v for k, v in namespace.items() if not k.startswith("_")})
            return None
        if name not in namespace:
            defined = sorted(k for k in namespace if not k.startswith("_"))
            raise ConfigError(f"{path.name}: line {line}: `{shown}` defines no {name!r} (it has {', '.join(defined)})")
        return namespace[name]
