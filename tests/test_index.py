"""Stage 5: candidate pairs within a Hamming radius equal the brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from dedupe.index import brute_force_pairs, pairs_within, popcount64


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)


def clustered_codes(rng: np.random.Generator, n: int, centres: int = 25, max_flips: int = 14) -> np.ndarray:
    """Codes around a few centres (near-duplicates), each with 0..max_flips random bits flipped."""
    base = random_codes(rng, centres)
    out = []
    for _ in range(n):
        x = int(base[rng.integers(centres)])
        for b in rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False):
            x ^= 1 << int(b)
        out.append(x)
    return np.array(out, dtype=np.uint64)


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    rng = np.random.default_rng(42)
    mixed = np.concatenate([clustered_codes(rng, 500), random_codes(rng, 250)])
    # exact repeats and the extreme values
    mixed = np.concatenate([mixed, mixed[:5], np.array([0, 2**64 - 1, 0], dtype=np.uint64)])
    return mixed[rng.permutation(len(mixed))]


@pytest.mark.parametrize("radius", [0, 1, 3, 8, 14, 15, 16, 24])
def test_flat_index_equals_brute_force(codes, radius):
    expected = brute_force_pairs(codes, radius)
    got = pairs_within(codes, radius)
    assert len(expected) > 0
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("radius", [0, 1, 5, 10, 14, 15])
def test_multi_hash_index_equals_brute_force(codes, radius):
    """flat_limit forced small: the multi-hash (pigeonhole) path must find exactly the same pairs."""
    expected = brute_force_pairs(codes, radius)
    got = pairs_within(codes, radius, flat_limit=10)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sets_both_paths(seed):
    rng = np.random.default_rng(seed)
    codes = np.concatenate([clustered_codes(rng, 200, centres=8, max_flips=20), random_codes(rng, 100)])
    for radius in (6, 14):
        expected = brute_force_pairs(codes, radius)
        np.testing.assert_array_equal(pairs_within(codes, radius), expected)
        np.testing.assert_array_equal(pairs_within(codes, radius, flat_limit=50), expected)


def test_pairs_are_sorted_unique_and_ordered(codes):
    got = pairs_within(codes, 10)
    assert got.dtype == np.int64 and got.shape[1] == 2
    assert (got[:, 0] < got[:, 1]).all()
    assert len({tuple(p) for p in got.tolist()}) == len(got)
    assert got.tolist() == sorted(got.tolist())
    d = popcount64(codes[got[:, 0]] ^ codes[got[:, 1]])
    assert (d <= 10).all()


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_codes(n):
    got = pairs_within(np.zeros(n, dtype=np.uint64), 5)
    assert got.shape == (0, 2)


def test_no_pairs():
    codes = np.array([0, 2**64 - 1], dtype=np.uint64)
    assert pairs_within(codes, 10).shape == (0, 2)
    assert pairs_within(codes, 64).tolist() == [[0, 1]]


def test_popcount64():
    x = np.array([0, 1, 2**64 - 1, 0xF0F0], dtype=np.uint64)
    assert popcount64(x).tolist() == [0, 1, 64, 8]


def test_neighbours_between_two_sets_if_present():
    """`neighbours(base, queries, r)` (turned-copy search) equals the brute-force cross pairs."""
    from dedupe import index

    neighbours = getattr(index, "neighbours", None)
    if neighbours is None:
        pytest.skip("dedupe.index.neighbours not present")
    rng = np.random.default_rng(9)
    base = np.concatenate([clustered_codes(rng, 150, centres=10), random_codes(rng, 50)])
    queries = np.concatenate([clustered_codes(rng, 60, centres=10), base[:10]])
    for radius in (0, 6, 14):
        dist = popcount64((queries[:, None] ^ base[None, :]).ravel()).reshape(len(queries), len(base))
        expected = [(int(q), int(b)) for q, b in zip(*np.nonzero(dist <= radius))]
        for flat_limit in (10**6, 10):
            got = neighbours(base, queries, radius, flat_limit=flat_limit)
            assert [tuple(p) for p in got.tolist()] == expected
