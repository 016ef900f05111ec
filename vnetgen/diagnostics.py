"""Located problems (FILE:LINE:COL: severity: message) collected during load and validation."""
from __future__ import annotations

from dataclasses import field
from typing import List, Optional, Set, Tuple

from .dataclassc import dataclass

Mark = Tuple[int, int]  # 1-based (line, column)


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One located problem: FILE:LINE:COL, its severity and message; sorts by place."""
    file: str
    line: int
    col: int
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"


@dataclass
class Report:
    """Collects every problem at once, so the user sees them all in one run."""

    file: str
    items: List[Diagnostic] = field(default_factory=list)
    _seen: Set[Diagnostic] = field(default_factory=set, repr=False, compare=False)

    def add(self, severity: str, mark: Optional[Mark], message: str) -> None:
        line, col = mark or (1, 1)
        diag = Diagnostic(self.file, line, col, severity, message)
        if len(self._seen) != len(self.items):  # items changed behind our back: index them again
            self._seen = set(self.items)
        if diag not in self._seen:  # a set: 20,000 problems must not cost 20,000² comparisons
            self._seen.add(diag)
            self.items.append(diag)

    def error(self, mark: Optional[Mark], message: str) -> None:
        self.add("error", mark, message)

    def warning(self, mark: Optional[Mark], message: str) -> None:
        self.add("warning", mark, message)

    @property
    def errors(self) -> List[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> List[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> List[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.line, d.col, d.severity, d.message))


class InvalidProfile(Exception):
    """Raised when a profile has errors; carries the whole report."""

    def __init__(self, report: Report):
        super().__init__(f"{len(report.errors)} error(s) in {report.file}")
        self.report = report
