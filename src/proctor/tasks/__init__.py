"""What a benchmark is: the TaskSpec schema, the built-in spec files, and name resolution."""

from proctor.tasks.load import builtin_specs, load_spec_file, spec_from_dict
from proctor.tasks.names import dataset_abbr, dataset_names, resolve_datasets, spec_of, with_overrides
from proctor.tasks.resolve import ResolvedTask, resolve_task
from proctor.tasks.spec import GroupSpec, SubsetSpec, TaskSpec

__all__ = [
    "GroupSpec",
    "ResolvedTask",
    "SubsetSpec",
    "TaskSpec",
    "builtin_specs",
    "dataset_abbr",
    "dataset_names",
    "get_spec",
    "load_samples",
    "load_spec_file",
    "resolve_datasets",
    "resolve_task",
    "spec_from_dict",
    "spec_of",
    "with_overrides",
]


def get_spec(name: str) -> TaskSpec:
    """The built-in spec called `name`; ConfigError with close matches when there is none."""
    specs = builtin_specs()
    if name not in specs:
        from proctor.config.suggest import unknown_name_error

        raise unknown_name_error("benchmark", name, specs)
    return specs[name]


def load_samples(benchmark: str, subset: str, split: str, data_dir: str | None = None) -> list:  # type: ignore[type-arg]
    """The Samples of one subset and split of a built-in benchmark (a convenience for scripts and tests)."""
    from proctor.datasets import load_samples as load

    spec = get_spec(benchmark)
    spec.subset(subset)
    if split not in spec.splits.all:
        from proctor.config.suggest import unknown_name_error

        raise unknown_name_error(f"{spec.display_title} split", split, spec.splits.all)
    return spec.splits.select(split, load(spec.data_source(), spec.fields_for(subset), subset, split, data_dir))
