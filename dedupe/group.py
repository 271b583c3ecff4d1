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
"""Pixel counts within 3% are a tie: a framed copy's content is measured on a small image."""


def _rule_cmp(rule: str, a: Candidate, b: Candidate) -> int:
    """Negative when a is the better keeper by `rule`, positive when b is, 0 on a tie."""
    if rule == "pixels":
        pa, pb = a.info.content_pixels, b.info.content_pixels
        if max(pa, pb) <= PIXEL_TIE * min(pa, pb):
            return 0
        return -1 if pa > pb else 1
    ka, kb = _rule_key(rule, a), _rule_key(rule, b)
    return (ka > kb) - (ka < kb)


def _rule_key(rule: str, c: Candidate):
    if rule == "format":
        return -c.format_rank
    if rule == "size":
        return -c.file.size
    if rule == "date":
        return (c.info.exif_date is None, c.info.exif_date or "")
    return (len(c.file.path), c.file.path)  # "path"


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


def _cmp(rules: tuple[str, ...], a: Candidate, b: Candidate) -> tuple[int, str | None]:
    """(order, deciding rule) of two candidates; ties on every rule fall back to the path's sort order."""
    for rule in rules:
        c = _rule_cmp(rule, a, b)
        if c:
            return c, rule
    return (a.file.path > b.file.path) - (a.file.path < b.file.path), None


def choose_keeper(cands: list[Candidate], rules: tuple[str, ...]) -> tuple[int, str]:
    """Index of the keeper and the reason: the first rule on which it beats the runner-up.

    A single pass keeps the better of the best so far and the next candidate, in path order, so the
    result does not depend on the order the candidates come in.
    """
    order = sorted(range(len(cands)), key=lambda i: cands[i].file.path)
    best = order[0]
    for i in order[1:]:
        if _cmp(rules, cands[i], cands[best])[0] < 0:
            best = i
    if len(order) == 1:
        return best, "only file"
    reasons = [_cmp(rules, cands[best], cands[i])[1] for i in order if i != best]
    rule = next((r for r in rules if r in reasons), None)  # the most important rule it won by
    return best, _reason(rule, cands[best]) if rule else "identical by every rule: first path in sort order"


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
