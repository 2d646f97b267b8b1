"""The outcome of one check on one row: passed, failed (and why), or skipped (and why).

Check functions return a ``CheckOutcome``; the row runner's child sends it to its parent as
JSON (``to_dict``/``from_dict``), and ``--report-json`` writes the same plain form.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


class Status(enum.StrEnum):
    """A check's verdict on a row; a ``str``, so it compares equal to and serializes as its value."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result on one row.

    Attributes:
      status: ``Status.PASS``, ``Status.FAIL`` (the row is wrong) or ``Status.SKIP`` (the check could
        not judge it); the plain strings ``"pass"``, ``"fail"``, ``"skip"`` are accepted and converted.
      detail: what the row's report line says: why it failed, or the specifics of a skip.
      note: a short label the report counts rows by (e.g. ``"op histogram"``, a skip's reason).

    Example:
      >>> CheckOutcome.failed("re-lowered IR differs").to_dict()
      {'status': 'fail', 'detail': 're-lowered IR differs'}
    """

    status: Status
    detail: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        try:
            status = Status(self.status)
        except ValueError:
            valid = ", ".join(repr(s) for s in STATUSES)
            raise ValueError(f"unknown check status {self.status!r}; valid: {valid}") from None
        object.__setattr__(self, "status", status)  # frozen: the one normalization, at construction

    @classmethod
    def passed(cls, note: str | None = None) -> CheckOutcome:
        return cls(Status.PASS, note=note)

    @classmethod
    def failed(cls, detail: str) -> CheckOutcome:
        return cls(Status.FAIL, detail=detail)

    @classmethod
    def skipped(cls, note: str | None = None, detail: str | None = None) -> CheckOutcome:
        return cls(Status.SKIP, detail=detail, note=note)

    def with_note(self, note: str) -> CheckOutcome:
        return replace(self, note=note)

    def to_dict(self) -> dict[str, str]:
        """``{"status", "detail"?, "note"?}``: the fields that are set."""
        out = {"status": self.status.value}
        if self.detail is not None:
            out["detail"] = self.detail
        if self.note is not None:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckOutcome:
        """The outcome ``to_dict`` wrote; ``ValueError`` for an unknown status or field."""
        unknown = set(data) - {"status", "detail", "note"}
        if unknown or "status" not in data:
            raise ValueError(f"not a check outcome: {dict(data)!r}")
        return cls(data["status"], detail=data.get("detail"), note=data.get("note"))
