"""Checking the local data files of ``[world.hf_data]`` without loading ``datasets``.

Used twice: by ``harness validate`` (the ``check_experiment`` hook, so a bad file is found before
any training) and by :mod:`.sources` (before ``load_dataset``, and on the columns it loaded), so a
run reports a non-UTF-8 line, a broken JSON line, an empty file or a missing column as one line
naming the file and the line or column — never as a decode traceback, a byte offset or
``StopIteration``.
"""
from __future__ import annotations

from pathlib import Path

from harness.api import ConfigError, CorruptFileError, read_jsonl

from .options import LOCAL_BUILDERS, SourceTable

LINE_FIX = "fix or remove that line (one JSON object per line, UTF-8)"


def jsonl_columns(path: Path, where: str) -> list[str]:
    """The columns a JSONL file's rows have; a ConfigError naming ``where``, the file and the line otherwise."""
    try:
        rows = read_jsonl(path, fix=LINE_FIX)
    except CorruptFileError as err:
        raise ConfigError(f"[{where}] {err}.") from None
    if not rows:
        raise ConfigError(f"[{where}] path = {str(path)!r}: the file has no rows; give a file with one JSON "
                          f"object per line.")
    return list(dict.fromkeys(key for row in rows for key in row))  # in the order the file has them


def check_table(table: SourceTable, where: str) -> None:
    """A local file that exists, parses and has every column the table maps; hub ids pass unchecked."""
    path = Path(table.path).expanduser()
    if path.suffix.lower() not in LOCAL_BUILDERS:
        return  # a hub id or a local dataset directory: datasets decides
    if not path.is_file():
        raise ConfigError(f"[{where}] path = {table.path!r}: no such file.")
    if path.suffix.lower() == ".jsonl":
        optional = [r for r in table.optional_roles if r in table.columns]
        check_columns(table, [*table.roles(), *optional], jsonl_columns(path, where), where)


def check_columns(table: SourceTable, roles: list[str], available: list[str], where: str) -> None:
    """Every role's column is among ``available`` (a file's, or a loaded dataset's); a ConfigError naming the
    table, the role, the column and the columns that exist otherwise."""
    for role in roles:
        column = table.column(role)
        if column not in available:
            mapped = f"columns.{role} = {column!r}" if role in table.columns else f"role {role!r} (column {column!r} by default)"
            raise ConfigError(
                f"[{where}] {mapped}: no such column in {table.path!r}; its columns are: "
                f"{', '.join(available) or '(none)'}. Map the role with [{where}] columns = {{{role} = \"<column>\"}}."
            )


def check_world(options, table_name: str = "world.hf_data") -> list[str]:
    """Every problem of the world's local source tables, one line each."""
    problems = []
    for name in ("feedback", "sft", "rl", "eval", "pretraining"):
        table = getattr(options, name, None)
        if table is None:
            continue
        try:
            check_table(table, f"{table_name}.{name}")
        except ConfigError as err:
            problems.append(str(err))
    return problems
