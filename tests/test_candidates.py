"""Candidate pairs: a pHash match far from exact needs a second hash to agree."""

from __future__ import annotations

import numpy as np

from dedupe import Settings
from dedupe.candidates import ALONE_RADIUS, CONSENSUS_DHASH, find_candidates
from dedupe.progress import NullProgress

RNG = np.random.default_rng(11)


def flip(code: int, bits: int) -> int:
    """`code` with `bits` of its low bits flipped (distinct bits, so the distance is exactly `bits`)."""
    return int(code) ^ ((1 << bits) - 1)


def library(pairs: list[tuple[int, int]], framed_first: bool = False):
    """Two images per (pHash distance, dHash distance), every other pair of images far apart."""
    codes = RNG.integers(0, 2**63, size=(2 * len(pairs), 10), dtype=np.uint64)
    framed = np.zeros(2 * len(pairs), bool)
    for k, (dp, dd) in enumerate(pairs):
        a, b = 2 * k, 2 * k + 1
        codes[b, 0] = flip(codes[a, 0], dp)
        codes[b, 1] = flip(codes[a, 1], dd)
        if framed_first:  # a's inside of its frame is what matches b
            codes[a, 2], codes[a, 0] = codes[a, 0], ~codes[a, 0]
            framed[a] = True
    return codes, framed


def found(codes, framed, **kw) -> set[tuple[int, int]]:
    images = list(range(len(codes)))
    settings = Settings(rotations=False, mirror=False, **kw)
    return set(find_candidates(images, codes, framed, settings, NullProgress(), "candidates"))


def test_a_far_phash_match_needs_the_dhash_to_agree():
    pairs = [
        (ALONE_RADIUS, 40),  # near enough alone
        (ALONE_RADIUS + 2, CONSENSUS_DHASH),  # far, dHash agrees
        (14, CONSENSUS_DHASH + 1),  # far, dHash disagrees: chance
        (14, 30),
        (16, 0),  # beyond the pHash radius; the dHash radius (8) finds it
    ]
    codes, framed = library(pairs)
    assert found(codes, framed) == {(0, 1), (2, 3), (8, 9)}


def test_the_inside_of_a_frame_needs_no_dhash():
    """A framed picture's dHash sees its frame: only its pHash inside the frame can match."""
    codes, framed = library([(14, 40)], framed_first=True)
    assert found(codes, framed) == {(0, 1)}


def test_queries_see_the_same_pairs():
    codes, framed = library([(12, 10), (12, 30), (6, 40)])
    images = list(range(len(codes)))
    settings = Settings(rotations=False, mirror=False)
    every = find_candidates(images, codes, framed, settings, NullProgress(), "all")
    asked = find_candidates(images, codes, framed, settings, NullProgress(), "some", queries=[1, 2, 4])
    assert set(every) == {(0, 1), (4, 5)}
    assert set(asked) == {(0, 1), (4, 5)}


def test_a_rescan_searches_only_the_new_pictures_and_finds_every_pair_a_full_search_finds(tmp_path, monkeypatch):
    """The pairs among the pictures seen before come from the library snapshot; the new pictures are the
    only queries. Their order and file indices change between scans, as a walk's do."""
    import dedupe.candidates as candidates
    from dedupe.cache import Cache
    from dedupe.snapshot import Snapshots

    rng = np.random.default_rng(12)
    codes, framed = library([(3, 2), (9, 4), (12, 10), (13, 30), (6, 5)] * 8, framed_first=True)
    codes = np.concatenate([codes, rng.integers(0, 2**63, size=(60, 10), dtype=np.uint64)])
    framed = np.concatenate([framed, np.zeros(60, bool)])
    for k in range(80, 90):  # turned copies: k's pHash turned by 90 or 270 degrees is near k - 40's pHash
        codes[k, 2 + (1 if k % 2 else 3)] = flip(codes[k - 40, 0], 2)
    hashes = [f"{n:032x}" for n in range(len(codes))]
    settings = Settings()
    asked = []
    full_search = candidates.find_candidates

    def spy(images, codes, framed, settings, progress, title, queries=None):
        asked.append(queries)
        return full_search(images, codes, framed, settings, progress, title, queries)

    monkeypatch.setattr(candidates, "find_candidates", spy)
    cache = Cache(tmp_path / "c.sqlite")
    snaps = Snapshots(cache, [tmp_path])

    def scan_of(members: np.ndarray, first_file: int):
        images = [first_file + 3 * k for k in range(len(members))]
        args = (codes[members], framed[members], settings)
        got = candidates.kept_candidates(images, [hashes[m] for m in members], *args, snaps, NullProgress(), "c")
        want = full_search(images, *args, NullProgress(), "c")
        return images, got, want

    before = rng.permutation(len(codes))[: len(codes) * 3 // 4]
    _, got, want = scan_of(before, 0)
    assert asked == [None] and got == want
    rest = np.setdiff1d(np.arange(len(codes)), before)  # a quarter new; the others in the reverse order, so
    now = np.concatenate([before[::-1], rng.permutation(rest)])  # each saved pair is turned the other way
    images, got, want = scan_of(now, 7)
    assert got == want and len(want) >= 40 and {1, 3} <= set().union(*want.values())  # turned pairs too
    assert sorted(asked[1]) == sorted(images[k] for k, m in enumerate(now) if m not in before)
    asked.clear()
    assert scan_of(now, 7)[1] == want and asked == []  # unchanged: nothing searched
    cache.close()
