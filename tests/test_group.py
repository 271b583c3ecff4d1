"""Stage 7: clusters confirmed against their keeper (no chaining) and the keeper rules."""

from __future__ import annotations

import itertools
import random

import pytest

from dedupe.config import KEEPER_RULES
from dedupe.features.hashes import ORIENTATIONS
from dedupe.group import OWN_MARGIN, SHOT_TIE, WITHIN_MARGIN, Candidate, choose_keeper, cluster, components, upright
from dedupe.model import FileRecord, ImageInfo

A, B, C, D, E = range(5)


def edges_of(pairs):
    edges: dict[int, set[int]] = {}
    for a, b in pairs:
        edges.setdefault(a, set()).add(b)
        edges.setdefault(b, set()).add(a)
    return edges


def never_matched(calls=None):
    def matched(k, x):
        if calls is not None:
            calls.append((k, x))
        return False

    return matched


# --------------------------------------------------------------------------- components


def test_components():
    assert components([(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [4, 5]]
    assert components([]) == []
    assert components([(3, 0), (2, 1)]) == [[0, 3], [1, 2]]
    # any node ids, only those of the edges; a node paired with itself alone is no component
    assert components([(10**9, 5), (7, 7), (5, 3), (3, 10**9), (8, 2), (2, 6)]) == [[2, 6, 8], [3, 5, 10**9]]


def test_components_match_a_search_of_the_graph():
    rng = random.Random(5)
    for _ in range(200):
        nodes = rng.sample(range(10_000), rng.randint(1, 40))
        pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(0, 40))]
        linked = {x: set() for pair in pairs for x in pair}
        for a, b in pairs:
            linked[a].add(b)
            linked[b].add(a)
        expected, seen = [], set()
        for start in sorted(linked):
            if start not in seen:
                comp, todo = set(), [start]
                while todo:
                    x = todo.pop()
                    if x not in comp:
                        comp.add(x)
                        todo += linked[x] - comp
                seen |= comp
                if len(comp) > 1:
                    expected.append(sorted(comp))
        assert components(pairs) == expected


# --------------------------------------------------------------------------- no chaining


def test_no_chaining_when_end_of_chain_is_keeper():
    """A~B, B~C, not A~C: with A as keeper, C is not put with A."""
    calls = []
    out = cluster([A, B, C], never_matched(calls), edges_of([(A, B), (B, C)]), lambda ids: min(ids))
    together = [set(m) for _, m in out]
    assert not any({A, C} <= m for m in together)
    assert out[0] == (A, [A, B])
    assert (A, C) in calls  # A~C was checked on demand, not assumed


def test_chain_joined_only_when_both_confirmed_with_keeper():
    """With B as keeper, A and C are both confirmed against B: one cluster is right."""
    out = cluster([A, B, C], never_matched(), edges_of([(A, B), (B, C)]), lambda ids: B)
    assert out == [(B, [A, B, C])]


def test_chain_joined_when_on_demand_check_confirms():
    out = cluster([A, B, C], lambda k, x: {k, x} == {A, C}, edges_of([(A, B), (B, C)]), lambda ids: min(ids))
    assert out == [(A, [A, B, C])]


def test_left_over_members_group_among_themselves():
    """A-B-C-D chain, keeper A: A takes B; C and D (confirmed with each other) form their own cluster."""
    out = cluster([A, B, C, D], never_matched(), edges_of([(A, B), (B, C), (C, D)]), lambda ids: min(ids))
    assert out == [(A, [A, B]), (C, [C, D])]


def test_leftover_single_is_not_grouped():
    """A-B-C-D-E chain, keeper rule prefers the highest: E takes D, then C takes B; A stays alone."""
    edges = edges_of([(A, B), (B, C), (C, D), (D, E)])
    out = cluster([A, B, C, D, E], never_matched(), edges, lambda ids: max(ids))
    assert out == [(E, [D, E]), (C, [B, C])]


def test_cluster_property_random_graphs():
    """Every member of every cluster is confirmed against its keeper; clusters are disjoint."""
    rng = random.Random(7)
    for trial in range(200):
        n = rng.randint(2, 9)
        all_pairs = list(itertools.combinations(range(n), 2))
        confirmed = {p for p in all_pairs if rng.random() < 0.35}
        demand = {p for p in all_pairs if p not in confirmed and rng.random() < 0.3}
        edges = edges_of(confirmed)
        matched = lambda k, x: (min(k, x), max(k, x)) in demand  # noqa: E731
        prefer = list(range(n))
        rng.shuffle(prefer)
        pick = lambda ids: min(ids, key=prefer.index)  # noqa: E731
        table = {p: rng.randint(60, 100) for p in all_pairs}
        for comp in components(sorted(confirmed)):
            out = cluster(comp, matched, edges, pick, scores(table))
            seen = set()
            for keeper, members in out:
                assert keeper in members and len(members) >= 2
                assert members == sorted(members)
                assert not (set(members) & seen)
                seen |= set(members)
                assert set(members) <= set(comp)
                for x in members:
                    if x != keeper:
                        key = (min(keeper, x), max(keeper, x))
                        assert key in confirmed or key in demand, (trial, keeper, x)


def scores(table: dict[tuple[int, int], int]):
    return lambda a, b: table[(min(a, b), max(a, b))]


def test_a_member_matched_far_better_outside_goes_there():
    """B matches keeper A at 84 and C, which A does not match, at 99 (a mirrored burst frame and its own
    original): B goes with C, and A, matching nothing else, is left alone."""
    score = scores({(A, B): 84, (B, C): 99})
    out = cluster([A, B, C], never_matched(), edges_of([(A, B), (B, C)]), lambda ids: min(ids), score)
    assert out == [(B, [B, C])]


@pytest.mark.parametrize("outside", [84 + OWN_MARGIN - 1, 84 + OWN_MARGIN])
def test_the_margin_over_the_keeper_match(outside):
    """B matches keeper A at 84 and D, which A does not match, at `outside`: B leaves only by the margin."""
    table = {(A, B): 84, (A, C): 95, (B, D): outside}
    out = cluster([A, B, C, D], never_matched(), edges_of(table), lambda ids: min(ids), scores(table))
    assert out == ([(A, [A, B, C])] if outside < 84 + OWN_MARGIN else [(A, [A, C]), (B, [B, D])])


def test_a_set_of_copies_bridged_through_the_keeper_splits_off():
    """Keeper A (a mirrored copy of frame 1) matches frame 2's copies B, C at 80-85 and frame 1's copy E at
    99; D, frame 2 mirrored, matches B and C at 99 but not A: B and C leave with D."""
    table = {(A, B): 85, (A, C): 80, (B, C): 99, (A, E): 99, (B, D): 99, (C, D): 99}
    out = cluster([A, B, C, D, E], never_matched(), edges_of(table), lambda ids: min(ids), scores(table))
    assert out == [(A, [A, E]), (B, [B, C, D])]


@pytest.mark.parametrize(
    "outside, shot, leaves", [(95, True, True), (96 - SHOT_TIE - 1, True, False), (95, False, False)]
)
def test_a_tie_goes_to_the_picture_taken_at_the_same_moment(outside, shot, leaves):
    """C, a crop of burst frame D that lies inside frame A too, matches keeper A at 96 and D, which A does
    not match, at `outside`: it goes with D when that is a tie (within SHOT_TIE) and it kept D's capture
    time, not A's."""
    table = {(A, B): 99, (A, C): 96, (C, D): outside, (D, E): 99}
    taken = {A: 1, B: 1, C: 2 if shot else 3, D: 2, E: 2}
    out = cluster(
        [A, B, C, D, E], never_matched(), edges_of(table), lambda ids: A if A in ids else D, scores(table),
        lambda a, b: taken[a] == taken[b],
    )
    assert out == ([(A, [A, B]), (D, [C, D, E])] if leaves else [(A, [A, B, C]), (D, [D, E])])


def test_cluster_is_deterministic():
    edges = edges_of([(0, 1), (1, 2), (2, 3), (0, 3), (3, 4)])
    runs = {repr(cluster([4, 3, 2, 1, 0], never_matched(), edges, lambda ids: min(ids))) for _ in range(5)}
    assert len(runs) == 1


# --------------------------------------------------------------------------- keeper rules


def cand(
    path="/p/a.jpg", w=4000, h=3000, fmt="JPEG", lossless=False, size=1_000_000, date=None, camera=None, content=None
) -> Candidate:
    f = FileRecord(path, "/p", size, 0, 1, abs(hash(path)) % 10**6, fmt)
    info = ImageInfo(w, h, fmt, lossless, content if content is not None else w * h, date, camera)
    return Candidate(f, info)


def keeper(cands, rules=KEEPER_RULES):
    k, reason = choose_keeper(cands, rules)
    return cands[k].file.path, reason


def test_most_pixels_wins():
    path, reason = keeper(
        [
            cand("/p/small.png", 2000, 1500, "PNG", lossless=True, size=9_000_000, date="2001:01:01 00:00:00"),
            cand("/p/longer/name/big.jpg", 4000, 3000, size=100),
        ]
    )
    assert path == "/p/longer/name/big.jpg"
    assert reason.startswith("most pixels") and "4000x3000" in reason


def test_content_pixels_not_canvas_decide():
    """A framed copy has a bigger canvas but no more picture."""
    path, _ = keeper(
        [
            cand("/p/framed.jpg", 4200, 3150, content=4000 * 3000 - 10),
            cand("/p/orig.jpg", 4000, 3000),
        ]
    )
    assert path == "/p/orig.jpg"


def test_nearly_equal_pixel_counts_tie():
    """Content pixels within 3% are a tie (framed copies are measured on a small image): format decides."""
    path, reason = keeper(
        [
            cand("/p/a.jpg", content=102_000, size=10_000),
            cand("/p/b_longer_name.png", fmt="PNG", lossless=True, content=100_000, size=500),
        ]
    )
    assert path == "/p/b_longer_name.png"
    assert reason.startswith("better format")


def test_keeper_is_never_beaten_on_pixels():
    cands = [
        cand("/p/a.jpg", content=105_000, size=1000),
        cand("/p/b.jpg", content=102_000, size=2000),
        cand("/p/c.png", fmt="PNG", lossless=True, content=100_000, size=500),
    ]
    k, reason = choose_keeper(cands, KEEPER_RULES)
    best = cands[k].info.content_pixels
    assert all(c.info.content_pixels <= 1.03 * best for c in cands), (cands[k].file.path, reason)


def test_reason_explains_the_choice_over_the_runner_up():
    path, reason = keeper(
        [
            cand("/p/a.png", 4000, 3000, "PNG", lossless=True),
            cand("/p/b.jpg", 4000, 3000),
            cand("/p/c.jpg", 2000, 1500),
        ]
    )
    assert path == "/p/a.png"
    assert reason.startswith("better format")


def test_lossless_over_reencoded():
    path, reason = keeper(
        [
            cand("/p/a.jpg", size=5_000_000),
            cand("/p/b_longer_name.png", fmt="PNG", lossless=True, size=1000),
        ]
    )
    assert path == "/p/b_longer_name.png"
    assert reason.startswith("better format")


def test_camera_original_over_reencoded():
    path, reason = keeper(
        [
            cand("/p/a.jpg", size=5_000_000),
            cand("/p/camera_original.jpg", camera="Canon EOS 80D", size=1000),
        ]
    )
    assert path == "/p/camera_original.jpg"
    assert "original" in reason


def test_larger_file_then():
    path, reason = keeper([cand("/p/a.jpg", size=1000), cand("/p/bbbbbb.jpg", size=2000)])
    assert path == "/p/bbbbbb.jpg"
    assert reason.startswith("largest file")


def test_earlier_exif_date_then():
    path, reason = keeper(
        [
            cand("/p/a.jpg", date="2020:01:01 00:00:00"),
            cand("/p/bbbbbb.jpg", date="2019:12:31 23:59:59"),
            cand("/p/c.jpg"),  # no date loses to any date
        ]
    )
    assert path == "/p/bbbbbb.jpg"
    assert reason.startswith("earliest EXIF date")
    path, _ = keeper([cand("/p/a.jpg"), cand("/p/bbbbbb.jpg", date="2030:01:01 00:00:00")])
    assert path == "/p/bbbbbb.jpg"


def test_shorter_path_last():
    path, reason = keeper([cand("/p/deep/folder/a.jpg"), cand("/p/zz.jpg")])
    assert path == "/p/zz.jpg"
    assert reason == "shortest path"


def test_identical_candidates_first_path_wins():
    path, _ = keeper([cand("/p/b.jpg"), cand("/p/a.jpg")])
    assert path == "/p/a.jpg"


def test_reason_for_equally_long_paths():
    _, reason = keeper([cand("/p/b/x.jpg"), cand("/p/a/x.jpg")])
    assert reason != "shortest path"


def test_single_candidate():
    assert choose_keeper([cand()], KEEPER_RULES) == (0, "only file")


@pytest.mark.parametrize(
    "rules,expected",
    [
        (("path",), "/p/a.jpg"),
        (("size", "pixels"), "/p/big_file_small_picture.jpg"),
        (("date", "pixels"), "/p/old.jpg"),
        (("format", "pixels"), "/p/lossless.png"),
        (("pixels", "path"), "/p/the_biggest_picture.jpg"),
    ],
)
def test_custom_rule_order(rules, expected):
    cands = [
        cand("/p/a.jpg", 1000, 750, size=10),
        cand("/p/big_file_small_picture.jpg", 1000, 750, size=10_000_000),
        cand("/p/old.jpg", 1000, 750, date="1999:01:01 00:00:00"),
        cand("/p/lossless.png", 1000, 750, fmt="PNG", lossless=True),
        cand("/p/the_biggest_picture.jpg", 5000, 3750),
    ]
    path, _ = keeper(cands, rules)
    assert path == expected


def test_keeper_choice_independent_of_input_order():
    cands = [cand(f"/p/{n}.jpg", size=1000 + (n % 3), date=None if n % 2 else "2000:01:01 00:00:00") for n in range(8)]
    first = keeper(cands)
    rng = random.Random(3)
    for _ in range(10):
        shuffled = cands[:]
        rng.shuffle(shuffled)
        assert keeper(shuffled) == first


# --------------------------------------------------------------------------- orientation of the keeper

MIRROR, QUARTER = ORIENTATIONS.index((0, True)), ORIENTATIONS.index((1, False))


def test_keeper_candidates_are_turned_as_most_files():
    """A~B as is, A~C mirrored, C~D as is (so D is mirrored too), B~E as is: A, B, E are upright."""
    evidence = {
        (A, B): {"orientation": 0},
        (A, C): {"orientation": MIRROR},
        (C, D): {"orientation": 0},
        (B, E): {"orientation": 0},
    }
    assert upright([A, B, C, D, E], evidence, edges_of(evidence), lambda i: 1) == [A, B, E]
    five = lambda i: 5 if i == C else 1  # noqa: E731 - C has 5 files
    assert upright([A, B, C, D, E], evidence, edges_of(evidence), five) == [C, D]


def test_orientations_compose_along_the_pairs():
    """B is A turned a quarter; C is B turned back (the pair stored as (B, C)): C is turned as A is."""
    evidence = {(A, B): {"orientation": QUARTER}, (B, C): {"orientation": ORIENTATIONS.index((3, False))}}
    assert upright([A, B, C], evidence, edges_of(evidence), lambda i: 1) == [A, C]
    evidence = {(A, B): {"orientation": QUARTER}, (B, C): {"orientation": QUARTER}}  # C is A half turned
    # three ways, one file each: a tie
    assert upright([A, B, C], evidence, edges_of(evidence), lambda i: 1) == [A, B, C]


def test_a_tie_keeps_every_image():
    evidence = {(A, B): {"orientation": MIRROR}}
    assert upright([A, B], evidence, edges_of(evidence), lambda i: 1) == [A, B]


@pytest.mark.parametrize("in_keeper", [0.97, 1.0 - WITHIN_MARGIN / 2])
def test_a_tie_goes_to_the_picture_the_member_lies_wholly_inside(in_keeper):
    """B, a crop, matches keeper A and C (which A does not match) at 98 and 97, with no capture time to
    tell: it lies wholly inside C and `in_keeper` inside A. It leaves for C when it sticks out of A by
    WITHIN_MARGIN or more; a tie it lies as far inside either way stays with the keeper."""
    table = {(A, B): 98, (B, C): 97}
    shares = {(B, A): in_keeper, (B, C): 1.0}
    out = cluster(
        [A, B, C], never_matched(), edges_of(table), lambda ids: min(ids), scores(table),
        within=lambda a, b: shares.get((a, b), 1.0),
    )
    assert out == ([(B, [B, C])] if in_keeper <= 1.0 - WITHIN_MARGIN else [(A, [A, B])])


def test_members_the_first_keeper_could_not_confirm_are_tried_with_the_next():
    """Mirrored copy M of frame A is kept first (while frame B's copies B1, B2, which it matches at 86,
    count towards its orientation); B1 and B2 leave for B's own original B0, and A becomes the keeper.
    Crop C matches A but not M (keypoints do not match a mirrored picture): it is confirmed against A now,
    where it was left alone before (dark55: two 75% crops of a dark burst frame)."""
    a, c, m, b0, b1, b2 = range(6)
    table = {(a, c): 99, (a, m): 99, (m, b1): 86, (m, b2): 86, (b1, b2): 100, (b0, b1): 100, (b0, b2): 100}
    pick = lambda ids: m if {m, b1} <= set(ids) else min(ids)  # noqa: E731
    out = cluster([a, c, m, b0, b1, b2], never_matched(), edges_of(table), pick, scores(table))
    assert out == [(a, [a, c, m]), (b0, [b0, b1, b2])]
