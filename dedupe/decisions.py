"""Remembered decisions: groups a person said are "not duplicates", or whose copies are all to be kept.

A decision is stored as the multiset of its group's content hashes (one entry per file, so two
byte-identical copies count twice) with its kind. Keyed by content, it survives renames and moves.
A later group is suppressed when one decision covers it: each of its content hashes occurs in the group
at most as often as in the decision. So a group that gains a file with another content, or one more
byte-identical copy, is proposed again (that file was never judged), while a group that merely lost a
file, or whose files were renamed or moved, stays suppressed.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from .model import Group

KINDS = ("not_duplicates", "keep_all")
"""What a person can decide about a group: its files are different pictures, or copies all to be kept."""
FORGET = "forget"
"""A plan's word for "drop the decisions that cover this group" (the review cleared one)."""


def decision_key(hashes: Iterable[str]) -> tuple[str, ...]:
    """A group's content hashes as a decision stores them: sorted, repeats kept."""
    return tuple(sorted(hashes))


def covers(decided: Iterable[str], hashes: Iterable[str]) -> bool:
    """Whether a decision on `decided` covers a group with these content hashes (see the module)."""
    need, have = Counter(hashes), Counter(decided)
    return all(have[h] >= n for h, n in need.items())


class Decided:
    """The stored decisions, indexed by content hash, so that a scan's groups are looked up quickly."""

    def __init__(self, rows: Iterable[tuple[tuple[str, ...], str]]) -> None:
        self._by_hash: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for hashes, kind in rows:
            for h in set(hashes):
                self._by_hash.setdefault(h, []).append((hashes, kind))

    def judged(self, hashes: list[str]) -> list[bool]:
        """Which files of a group (by content hash) a remembered decision judged: those whose content a
        decision holds that shares two files or more with the group. A group that gained a file is
        proposed again, but what a person kept must stay: only a new file may go. Every copy of a judged
        content counts as judged: which of them is the new one cannot be told from their bytes."""
        out = [False] * len(hashes)
        for decided, _kind in {d for h in set(hashes) for d in self._by_hash.get(h, ())}:
            share = Counter(decided) & Counter(hashes)
            if sum(share.values()) >= 2:
                out = [was or h in share for was, h in zip(out, hashes)]
        return out

    def kind_for(self, hashes: list[str]) -> str | None:
        """The kind of a decision covering a group with these content hashes, or None."""
        for decided, kind in self._by_hash.get(hashes[0], ()) if hashes else ():
            if covers(decided, hashes):
                return kind
        return None


def suppress(groups: list[Group], decided: Decided, ignore: bool) -> tuple[list[Group], int]:
    """(groups to report, how many were suppressed). A covered group is marked with its decision's kind;
    with `ignore` it is still reported (marked), else it is left out."""
    shown, suppressed = [], 0
    for g in groups:
        g.decision = decided.kind_for([m.content_hash for m in g.members])
        if g.decision is not None and not ignore:
            suppressed += 1
        else:
            shown.append(g)
    return shown, suppressed


def honour(plan: dict, remembered: Decided) -> list[tuple[object, str, int | None]]:
    """Keep every file of the plan's groups that a remembered decision covers and the plan does not
    decide itself: a report written before `dedupe decide` (or the review) said "not duplicates" still
    proposed removing them; and of a group that gained a file since, the files it judged. (id, kind,
    None when the whole group is kept, else how many of its files) of each such group."""
    kept = []
    for g in plan["groups"]:
        hashes = [f.get("content_hash") for f in g["files"]]
        if g.get("decision") or None in hashes or not any(f["action"] == "remove" for f in g["files"]):
            continue
        kind = remembered.kind_for(hashes)
        if kind is not None:
            for f in g["files"]:
                f["action"] = "keep"
            kept.append((g.get("id"), kind, None))
            continue
        judged = [f for f, was in zip(g["files"], remembered.judged(hashes)) if was and f["action"] == "remove"]
        for f in judged:  # the group gained a file since: only what was never judged may go
            f["action"] = "keep"
        if judged:
            kept.append((g.get("id"), "judged", len(judged)))
    return kept


@dataclass
class Recorded:
    """What `record` did with a plan's decisions."""

    remembered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    """Decisions stored, by kind."""
    forgotten: int = 0
    """Stored decisions dropped because the plan cleared them."""


def plan_decisions(plan: dict) -> list[tuple[tuple[str, ...], str]]:
    """(content hashes, kind or FORGET) of each group of a checked plan that carries a decision."""
    decided = [g for g in plan["groups"] if g.get("decision")]
    return [(decision_key(f["content_hash"] for f in g["files"]), g["decision"]) for g in decided]


def record(plan: dict, cache: str | os.PathLike) -> Recorded:
    """Store the decisions of a checked plan in the cache file at `cache` (see cache.default_path())."""
    from .cache import Cache

    out = Recorded()
    todo = plan_decisions(plan)
    if not todo:
        return out
    store = Cache(cache)
    try:
        if not store.persistent:  # a full or read-only disk: it said it remembered what it could not keep
            from .cachefile import CacheError

            raise CacheError(f"cannot write the decisions into {cache}: {'; '.join(store.warnings)}")
        for hashes, kind in todo:
            if kind == FORGET:
                out.forgotten += store.forget_decisions(hashes)
            else:
                store.put_decision(hashes, kind)
                out.remembered[kind] += 1
    finally:
        store.close()
    return out
