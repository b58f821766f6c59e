"""The error of bad scenario input (its own module: the reader and its checks both raise it)."""

from __future__ import annotations

from pathlib import Path


class ScenarioError(ValueError):
    """Bad scenario input; the message names the file, the line and the field."""

    def __init__(self, file: str | Path, message: str, line: int | None = None, fld: str | None = None) -> None:
        where = str(file)
        if line is not None:
            where += f", line {line}"
        if fld is not None:
            where += f", field {fld!r}"
        super().__init__(f"{where}: {message}")
        self.file, self.line, self.field = str(file), line, fld
