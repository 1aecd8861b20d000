"""Reading one source table with the ``datasets`` library: a local file or a hub dataset.

Local files go through ``load_dataset("json" | "parquet" | "csv", data_files=…)``; anything
else is a hub id (or a local dataset directory) for ``load_dataset(path, split=…,
revision=…)``. Only a run reads data — this module imports ``datasets`` inside the function.
A column mapping that names a column the data lacks is a ``ConfigError`` naming the table, the
role, the missing column, the file and the columns that do exist (:func:`.checks.check_columns`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import HarnessError

from .checks import check_columns, check_table
from .options import LOCAL_BUILDERS, SourceTable


def read_rows(table: SourceTable, where: str) -> list[dict[str, Any]]:
    """The table's rows as dicts keyed by *role* (``prompt``, ``chosen``, …), at most ``limit`` of them."""
    dataset = load(table, where)
    if table.limit is not None:
        dataset = dataset.select(range(min(table.limit, len(dataset))))
    available = list(dataset.column_names)
    # an optional role (annotator) is read when mapped, or when a column of its own name exists
    optional = [r for r in table.optional_roles if r in table.columns or r in available]
    roles = [*table.roles(), *optional]
    check_columns(table, roles, available, where)
    data = dataset.select_columns(sorted({table.column(r) for r in roles})).to_dict()
    return [{role: data[table.column(role)][i] for role in roles} for i in range(len(dataset))]


def load(table: SourceTable, where: str):
    """A ``datasets.Dataset``: local file, local dataset directory or hub dataset."""
    from datasets import load_dataset

    path = Path(table.path).expanduser()
    builder = LOCAL_BUILDERS.get(path.suffix.lower())
    if builder is not None:
        check_table(table, where)  # missing, empty, non-UTF-8 or broken lines: one line naming file and line
    try:
        if builder is not None:
            return load_dataset(builder, data_files=str(path), split=table.split)
        return load_dataset(table.path, data_dir=table.data_dir, split=table.split, revision=table.revision)
    except HarnessError:
        raise
    except Exception as err:  # network, unknown dataset, bad split: say which table and what to check
        raise HarnessError(
            f"[{where}] cannot load dataset {table.path!r} (split {table.split!r}"
            f"{f', data_dir {table.data_dir!r}' if table.data_dir else ''}): {type(err).__name__}: {err}. "
            f"Use a local .jsonl/.parquet file, or a hub id reachable from this machine."
        ) from err

