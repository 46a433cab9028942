"""Where benchmark files are looked for: the data roots, in order, and the layouts under each."""

from __future__ import annotations

import os
from pathlib import Path

from proctor.datasets.source import DataSource
from proctor.errors import DataError

DATA_ENV = "PROCTOR_DATA"


def default_data_root() -> Path:
    """The per-user cache directory `fetch` downloads into."""
    from platformdirs import user_cache_dir  # lazy: keeps `import proctor.datasets` light

    return Path(user_cache_dir("proctor")) / "data"


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The data roots in search order: data_dir, $PROCTOR_DATA, ./data, the user cache dir."""
    roots: list[Path] = []
    if data_dir is not None:
        explicit = Path(data_dir).expanduser()
        # A typo in an explicit directory must not silently fall through to other data.
        if not explicit.is_dir():
            raise DataError(f"data directory {explicit} does not exist (check --data-dir / data_dir)")
        roots.append(explicit)
    env = os.environ.get(DATA_ENV)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path("data"))
    roots.append(default_data_root())
    unique: list[Path] = []
    for root in roots:
        absolute = root.absolute()
        if absolute not in unique:
            unique.append(absolute)
    return unique


def find_file(data: DataSource, subset: str, split: str, data_dir: str | Path | None = None) -> Path:
    """The file holding (subset, split): an absolute layout as it is, else the first match over
    roots x layouts."""
    relative = data.candidates(subset, split)
    absolute = [Path(p) for p in relative if Path(p).is_absolute()]
    for path in absolute:
        if path.is_file():
            return path
    if absolute and len(absolute) == len(relative):
        raise DataError(f"no {data.title} data file: {' or '.join(map(str, absolute))} does not exist")
    roots = data_roots(data_dir)
    for root in roots:
        for rel in relative:
            path = root / rel
            if path.is_file():
                return path
    where = f"{subset}/{split}" if subset else split
    how = f"run `proctor data fetch {data.name}` or " if data.source.archive else ""
    raise DataError(
        f"no {data.title} data for {where}: looked for {' or '.join(relative)} under "
        f"{', '.join(str(r) for r in roots)}; {how}pass --data-dir DIR (or set ${DATA_ENV})"
    )
