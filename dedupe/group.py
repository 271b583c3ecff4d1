"""Stage 7: confirmed pairs -> groups, each with a keeper chosen by rules, without chaining.

Linkage rule: connected components of the confirmed pairs only propose a group. The keeper is chosen in
the component, and an image stays in the group only if it is confirmed against the keeper itself
(directly, or by a verification run on demand). Images left out form groups among themselves, by the
same rule. So A~B and B~C never put A and C together unless A~C (or both match the keeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .config import Settings
from .features.hashes import ORIENTATIONS, inverse, orient
from .cache import Store
from .match import confirm_one
from .model import FileRecord, Group, ImageInfo, Member
from .progress import Progress

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
    whole = [i for i in alive if not cands[i].info.cut_short]
    if len(whole) == 1:
        return whole[0], "the only copy not cut short"
    alive = whole or alive  # a damaged file keeps over none that is whole, whatever the rules
    for rule in rules:
        survivors = _survivors(rule, cands, alive)
        if len(survivors) == 1:
            return survivors[0], _reason(rule, cands[survivors[0]])
        alive = survivors
    return alive[0], "equal by every rule: first path in sort order"


def components(pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2) of the graph of these edges, each sorted, in order of their first
    node. Only the nodes of the edges are held: a node for every picture of a library (a list and a
    dict entry each) was 15 MB at 100,000 pictures, for a few thousand pairs."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while x != root:  # every node on the way now points at the root
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for x in sorted(parent):
        comps.setdefault(find(x), []).append(x)
    return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: c[0])


def cluster(
    nodes: list[int],
    matched: Callable[[int, int], bool],
    edges: dict[int, set[int]],
    pick_keeper: Callable[[list[int]], int],
    score: Callable[[int, int], int] = lambda a, b: 0,
    same_shot: Callable[[int, int], bool] = lambda a, b: False,
    within: Callable[[int, int], float] = lambda a, b: 1.0,
) -> list[tuple[int, list[int]]]:
    """Split `nodes` (one connected component) into (keeper, members) clusters confirmed against the keeper.

    `edges` are the confirmed pairs; `matched(k, x)` confirms a pair that is not among them; `score(a, b)` is
    a confirmed pair's similarity (0-100); `same_shot(a, b)` whether two pictures say they were taken at the
    same moment, `within(a, b)` the share of picture a that lies inside picture b (_owned).
    """

    def confirmed(keeper: int, nodes: list[int]) -> list[int]:
        return [x for x in nodes if x == keeper or x in edges.get(keeper, ()) or matched(keeper, x)]

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
        members = confirmed(keeper, comp)
        owned = _owned(keeper, members, pending_set, edges, score, same_shot, within)
        if owned != members and (chosen := pick_keeper(owned)) != keeper:  # some left: confirm with the new keeper
            # what the old keeper could not confirm may match the new one: a crop does not match a mirrored
            # copy kept as the keeper while the next frame of its burst counted, but matches the original
            left = set(members) - set(owned)
            owned = confirmed(chosen, [x for x in comp if x not in left])
            owned = _owned(chosen, owned, pending_set, edges, score, same_shot, within)
            keeper = chosen
        members = owned
        if len(members) > 1:
            out.append((keeper, members))
            taken = set(members)
        else:  # the keeper matches nothing directly: set it aside, the rest may still group
            taken = {keeper}
        pending = [x for x in pending if x not in taken]
    return out


OWN_MARGIN = 10
"""Points of similarity by which a member's match outside the keeper's group must beat its match with the
keeper for the member to leave (_owned)."""


SHOT_TIE = 3
"""Points within which a member's match outside the keeper's group ties with its match with the keeper, for
the capture time, or failing it the frames, to decide (_owned): one crop scored 96 with the frame it was not
cut from, 95 with its own."""
WITHIN_MARGIN = 0.01
"""Share of a member by which it must lie further inside a picture outside the keeper's group than inside
the keeper, in a tie, to leave for it (_owned). A crop lies wholly inside the frame it was cut from (0.99-1
as keypoints or ECC place it) and sticks out of the next frame of a burst taken in the same second by 2-5%:
it lies at least 0.95 inside, or it would not match."""


def _owned(
    keeper: int, members: list[int], pending: set[int], edges: dict[int, set[int]], score, same_shot, within
) -> list[int]:
    """The members that belong with the keeper: not one whose match with a picture the keeper does not match
    is OWN_MARGIN points stronger than its match with the keeper, which is what puts it in the group, nor
    one that matches such a picture as well (within SHOT_TIE) and, unlike the keeper, was taken at the same
    moment, or lies further inside it (WITHIN_MARGIN) than inside the keeper: an edit crops a picture, it
    does not add to it.

    A mirrored copy of one burst frame can look like the next frame as it is (a symmetric scene, one window
    shifted): it matched the other frame's keeper at 84 and its own original at 99, and went to the wrong
    group; a misty pier's frames were all grouped through one such copy kept as the keeper. A crop of one
    frame of a burst panned by 10-16% can lie inside the other frame too, pixel for pixel: both match it
    as well, and only the capture time it kept from its frame tells which it was cut from. Frames taken in
    the same second (burst49: panned by 6-10%) leave only the frames: a crop that sticks out of one by a few
    percent was cut from the other; one inside both cannot be told."""
    outside = pending - set(members)

    def leaves(x: int, y: int) -> bool:
        ours, theirs = score(x, keeper), score(x, y)
        if theirs >= ours + OWN_MARGIN:
            return True
        if theirs + SHOT_TIE < ours:
            return False
        return (same_shot(x, y) and not same_shot(x, keeper)) or within(x, y) >= within(x, keeper) + WITHIN_MARGIN

    return [x for x in members if x == keeper or not any(leaves(x, y) for y in edges.get(x, ()) if y in outside)]


def _orientation_table() -> list[list[int]]:
    """table[a][b]: the orientation that turning by ORIENTATIONS[a], then by ORIENTATIONS[b], amounts to."""
    probe = np.arange(6).reshape(2, 3)

    def key(a: np.ndarray) -> tuple:
        return a.shape, a.tobytes()

    index = {key(orient(probe, *o)): n for n, o in enumerate(ORIENTATIONS)}
    return [[index[key(orient(orient(probe, *a), *b))] for b in ORIENTATIONS] for a in ORIENTATIONS]


_THEN = _orientation_table()


def upright(
    images: list[int],
    evidence: dict[tuple[int, int], dict],
    edges: dict[int, set[int]],
    weight: Callable[[int], int],
) -> list[int]:
    """The images of a set of copies that are turned as most of its files are (each image counts
    `weight(image)` files), found through the orientations of its confirmed pairs (`edges` lists each
    image's partners in `evidence`): the keeper is chosen among them. A mirrored or rotated copy is rarer
    than the picture as it was taken, and when it was saved at a higher quality, or with the same EXIF,
    the keeper rules alone preferred it. Images no confirmed pair reaches are kept; a tie keeps all."""
    inside = set(images)
    turn = {images[0]: 0}  # the turn from images[0] to each image
    stack = [images[0]]
    while stack:
        x = stack.pop()
        for y in edges.get(x, ()):
            if y in inside and y not in turn:
                t = evidence[(min(x, y), max(x, y))].get("orientation", 0)  # turning the first by t gives the second
                if x > y:
                    t = ORIENTATIONS.index(inverse(*ORIENTATIONS[t]))
                turn[y] = _THEN[turn[x]][t]
                stack.append(y)
    votes: dict[int, int] = {}
    for img, t in turn.items():
        votes[t] = votes.get(t, 0) + weight(img)
    most = max(votes.values())
    if list(votes.values()).count(most) > 1:
        return images
    best = next(t for t, v in votes.items() if v == most)
    return [img for img in images if turn.get(img, best) == best]


def describe_transform(ev: dict, member_is_first: bool, keeper: ImageInfo, member: ImageInfo) -> dict:
    """How the member relates to the keeper, in words and numbers a person reads.

    Evidence is stored for a pair in index order (first, second); here it is turned around so that it
    reads from the keeper: "rotated" (clockwise degrees) and "mirrored" turn the keeper into the member,
    "frame removed" says whose frame ("keeper", "member" or "both");
    "crop" says which of the two is the crop and where it lies, in pixels of the uncropped one.
    """
    t = ev.get("orientation", 0)
    # turning the first image by t gives the second: when the member is the first, the keeper -> member
    # turn is the inverse of t
    k, mirrored = inverse(*ORIENTATIONS[t]) if member_is_first else ORIENTATIONS[t]
    out = {key: v for key, v in ev["transform"].items() if key not in ("cropped", "crop_box", "within")}
    if out.get("frame removed") in ("first", "second"):  # whose frame, said from the keeper's side
        out["frame removed"] = "member" if (out["frame removed"] == "first") == member_is_first else "keeper"
    if k:
        out["rotated"] = 90 * k
    if mirrored:
        out["mirrored"] = True
    if "cropped" in ev["transform"]:
        member_is_crop = (ev["transform"]["cropped"] == "first") == member_is_first
        whole = keeper if member_is_crop else member
        x0, y0, x1, y1 = ev["transform"]["crop_box"]
        out["crop"] = {
            "of": "member" if member_is_crop else "keeper",
            "box": [
                round(x0 * whole.width),
                round(y0 * whole.height),
                round(x1 * whole.width),
                round(y1 * whole.height),
            ],
        }
    return out


def build_groups(
    files: list[FileRecord],
    images: list[int],
    analysed: Store,
    copy_of: dict[int, int],
    evidence: dict[tuple[int, int], dict],
    settings: Settings,
    progress: Progress,
    title: str,
) -> list[Group]:
    """Byte-identical sets and confirmed pairs -> groups with a keeper, confirmed against the keeper.
    `analysed` loads each image from the cache when it is needed (keepers, members, pairs to check)."""
    progress.stage(title, len(images))
    copies: dict[int, list[int]] = {i: [i] for i in images}
    for c, rep in copy_of.items():
        if rep in copies:
            copies[rep].append(c)

    def cand(i: int, rep: int) -> Candidate:
        return Candidate(files[i], analysed.info(rep))

    def best_file(img_ids: list[int]) -> tuple[int, int, str]:
        """(image, file, reason) of the keeper among all files of these images turned as most are."""
        pool = [(rep, f) for rep in upright(img_ids, evidence, edges, lambda i: len(copies[i])) for f in copies[rep]]
        k, reason = choose_keeper([cand(f, rep) for rep, f in pool], settings.keeper_rules)
        return pool[k][0], pool[k][1], reason

    edges: dict[int, set[int]] = {}
    for a, b in evidence:
        edges.setdefault(a, set()).add(b)
        edges.setdefault(b, set()).add(a)

    def matched(k: int, x: int) -> bool:
        key = (min(k, x), max(k, x))
        if key not in evidence:
            ev = confirm_one(*key, analysed, settings)
            if ev is None:
                return False
            evidence[key] = ev
            edges.setdefault(k, set()).add(x)  # for upright(), which follows the pairs by edges
            edges.setdefault(x, set()).add(k)
        return True

    def score(a: int, b: int) -> int:
        return evidence[(min(a, b), max(a, b))]["score"]

    def within(a: int, b: int) -> float:
        shares = evidence[(min(a, b), max(a, b))]["transform"].get("within", (1.0, 1.0))
        return shares[0] if a < b else shares[1]

    def same_shot(a: int, b: int) -> bool:
        taken = analysed.info(a).exif_date
        return taken is not None and taken == analysed.info(b).exif_date

    clusters: list[tuple[int, list[int]]] = []
    analysed.prefetch({x for pair in evidence for x in pair} | {rep for rep in images if len(copies[rep]) > 1})
    for comp in components(list(evidence)):
        clusters += cluster(comp, matched, edges, lambda ids: best_file(ids)[0], score, same_shot, within)
    # byte-identical sets with no near match are groups of their own
    clustered = {x for _, members in clusters for x in members}
    clusters += [(rep, [rep]) for rep in images if len(copies[rep]) > 1 and rep not in clustered]

    groups = []
    for cluster_keeper, member_imgs in clusters:
        keeper_img, keeper_file, reason = best_file(member_imgs)
        if keeper_img != cluster_keeper:  # the members were confirmed against the cluster's keeper
            keeper_img = cluster_keeper
            k, reason = choose_keeper([cand(f, keeper_img) for f in copies[keeper_img]], settings.keeper_rules)
            keeper_file = copies[keeper_img][k]
        keeper_hash = analysed.hashes[keeper_img]
        members = []
        for img in member_imgs:
            info, content_hash = analysed.info(img), analysed.hashes[img]
            if img == keeper_img:
                ev = {"score": 100, "ssim": 1.0, "hash_distance": 0, "transform": {}}
            else:
                ev = evidence[(min(img, keeper_img), max(img, keeper_img))]
                ev = {**ev, "transform": describe_transform(ev, img < keeper_img, analysed.info(keeper_img), info)}
                ev.pop("orientation")
            for f in copies[img]:
                if f == keeper_file:
                    relation = "keeper"
                elif content_hash == keeper_hash:
                    relation = "exact"
                else:
                    relation = "near"
                members.append(
                    Member(
                        files[f],
                        info,
                        content_hash,
                        analysed.phash(img),
                        ev["score"],
                        relation,
                        {k: v for k, v in ev.items() if k != "score"},
                    )
                )
        members.sort(key=lambda m: (m.relation != "keeper", m.file.path))
        kind = "exact" if all(m.relation != "near" for m in members) else "near"
        groups.append(Group(kind, 0, reason, members))
    groups.sort(key=lambda g: (-g.bytes_freed, g.members[0].file.path))
    progress.advance(len(images))
    return groups
