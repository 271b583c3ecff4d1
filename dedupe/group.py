"""Stage 7: confirmed pairs -> groups, each with a keeper chosen by rules, without chaining.

Linkage rule: connected components of the confirmed pairs only propose a group. The keeper is chosen in
the component, and an image stays in the group only if it is confirmed against the keeper itself
(directly, or by a verification run on demand). Images left out form groups among themselves, by the
same rule. So A~B and B~C never put A and C together unless A~C (or both match the keeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .model import FileRecord, ImageInfo

FORMAT_RANK_TEXT = {3: "camera original", 2: "lossless file", 1: "re-encoded copy"}


@dataclass(frozen=True)
class Candidate:
    """One file as the keeper rules see it."""

    file: FileRecord
    info: ImageInfo

    @property
    def format_rank(self) -> int:
        """3 for a camera original (camera EXIF present), 2 for a lossless file, 1 for a re-encoded copy:
        a PNG exported from a camera JPEG has the same pixels but is not the original."""
        return 3 if self.info.camera else (2 if self.info.lossless else 1)


PIXEL_TIE = 1.03
"""Pixel counts within 3% of the most are a tie: a framed copy's content is measured on a small image."""


def _rule_key(rule: str, c: Candidate):
    """Smaller is better."""
    if rule == "pixels":
        return -c.info.content_pixels
    if rule == "format":
        return -c.format_rank
    if rule == "size":
        return -c.file.size
    if rule == "date":
        return (c.info.exif_date is None, c.info.exif_date or "")
    return len(c.file.path)  # "path"


def _survivors(rule: str, cands: list[Candidate], alive: list[int]) -> list[int]:
    """The candidates in `alive` that are best by `rule` (pixels: within PIXEL_TIE of the most)."""
    if rule == "pixels":
        most = max(cands[i].info.content_pixels for i in alive)
        return [i for i in alive if cands[i].info.content_pixels * PIXEL_TIE >= most]
    best = min(_rule_key(rule, cands[i]) for i in alive)
    return [i for i in alive if _rule_key(rule, cands[i]) == best]


def _reason(rule: str, c: Candidate) -> str:
    if rule == "pixels":
        return f"most pixels ({c.info.width}x{c.info.height})"
    if rule == "format":
        return f"better format: {FORMAT_RANK_TEXT[c.format_rank]} ({c.info.format})"
    if rule == "size":
        return f"largest file ({c.file.size:,} bytes)"
    if rule == "date":
        return f"earliest EXIF date ({c.info.exif_date})"
    return "shortest path"


def choose_keeper(cands: list[Candidate], rules: tuple[str, ...]) -> tuple[int, str]:
    """Index of the keeper and the reason.

    Each rule in turn keeps only the candidates that are best by it, until one is left; the reason is
    the rule that set aside the last other candidate (the runner-up). Candidates equal by every rule
    are decided by the sort order of their paths.
    """
    alive = sorted(range(len(cands)), key=lambda i: cands[i].file.path)
    if len(alive) == 1:
        return alive[0], "only file"
    for rule in rules:
        survivors = _survivors(rule, cands, alive)
        if len(survivors) == 1:
            return survivors[0], _reason(rule, cands[survivors[0]])
        alive = survivors
    return alive[0], "equal by every rule: first path in sort order"


def components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2) of a graph on 0..n-1, each sorted, in order of their first node."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)
    return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: c[0])


def cluster(
    nodes: list[int],
    matched: Callable[[int, int], bool],
    edges: dict[int, set[int]],
    pick_keeper: Callable[[list[int]], int],
) -> list[tuple[int, list[int]]]:
    """Split `nodes` (one connected component) into (keeper, members) clusters confirmed against the keeper.

    `edges` are the confirmed pairs; `matched(k, x)` confirms a pair that is not among them.
    """
    out = []
    pending = sorted(nodes)
    while len(pending) > 1:
        pending_set = set(pending)
        # the component of the first pending node, within what is still pending
        seen, stack = {pending[0]}, [pending[0]]
        while stack:
            for y in edges.get(stack.pop(), ()):
                if y in pending_set and y not in seen:
                    seen.add(y)
                    stack.append(y)
        comp = sorted(seen)
        if len(comp) == 1:
            pending = pending[1:]
            continue
        keeper = pick_keeper(comp)
        members = [x for x in comp if x == keeper or x in edges.get(keeper, ()) or matched(keeper, x)]
        if len(members) > 1:
            out.append((keeper, members))
            taken = set(members)
        else:  # the keeper matches nothing directly: set it aside, the rest may still group
            taken = {keeper}
        pending = [x for x in pending if x not in taken]
    return out
