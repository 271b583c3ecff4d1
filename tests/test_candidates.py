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
