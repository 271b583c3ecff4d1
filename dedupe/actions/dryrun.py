"""What apply would do, without doing it: every operation, the bytes freed, the groups it would skip."""

from __future__ import annotations

from dataclasses import dataclass, field

from .check import keeper_of, real_roots, skip_reasons
from .plan import check_plan


@dataclass
class DryRun:
    operations: list[tuple[str, str]] = field(default_factory=list)
    """(file to remove, the kept file it duplicates)."""
    bytes_freed: int = 0
    skipped: list[tuple[int, list[str]]] = field(default_factory=list)
    """(group id, reasons) of groups that changed since the scan: left alone whole."""


def dry_run(plan: dict, paranoid: bool = False) -> DryRun:
    """Walk the plan as apply would, checking the whole plan (PlanError) and each group against the disk
    (with `paranoid`, re-hashing as apply --paranoid does: check.skip_reasons), changing nothing."""
    check_plan(plan)
    roots = real_roots(plan)
    out = DryRun()
    for g in plan["groups"]:
        removals = [f for f in g["files"] if f["action"] == "remove"]
        if not removals:
            continue
        problems = skip_reasons(g, removals, roots, paranoid)
        if problems:
            out.skipped.append((g["id"], problems))
            continue
        keeper = keeper_of(g)
        for f in removals:
            out.operations.append((f["path"], keeper["path"]))
            out.bytes_freed += f["size"]
    return out
