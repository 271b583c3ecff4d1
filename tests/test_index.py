"""Stage 5: candidate pairs within a Hamming radius equal the brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from dedupe import index
from dedupe.index import brute_force_pairs, neighbours, pairs_within, popcount64


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


def cross_pairs(base: np.ndarray, queries: np.ndarray, radius: int) -> np.ndarray:
    dist = popcount64((queries[:, None] ^ base[None, :]).ravel()).reshape(len(queries), len(base))
    return np.argwhere(dist <= radius)


def test_neighbours_between_two_sets():
    """`neighbours(base, queries, r)` (turned-copy search) equals the brute-force cross pairs."""
    rng = np.random.default_rng(9)
    base = np.concatenate([clustered_codes(rng, 150, centres=10), random_codes(rng, 50)])
    queries = np.concatenate([clustered_codes(rng, 60, centres=10), base[:10]])
    for radius in (0, 6, 14):
        expected = cross_pairs(base, queries, radius)
        for flat_limit in (10**6, 10):
            np.testing.assert_array_equal(neighbours(base, queries, radius, flat_limit=flat_limit), expected)


def library_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Like a photo library's pHashes: random codes with 32 ones, and up to 11 copies of some of them,
    each copy 0-18 bits away from its original."""
    codes = []
    while len(codes) < n:
        ones = rng.choice(64, 32, replace=False)
        original = sum(1 << int(b) for b in ones)
        codes.append(original)
        for _ in range(int(rng.integers(0, 12)) if rng.random() < 0.3 else 0):
            copy = original
            for b in rng.choice(64, int(rng.integers(0, 19)), replace=False):
                copy ^= 1 << int(b)
            codes.append(copy)
    return rng.permutation(np.array(codes[:n], dtype=np.uint64))


@pytest.mark.parametrize("n", [400, 3000])
def test_multi_index_on_a_library_equals_brute_force(n):
    """The large-library path (forced at small n), at the default radius and around it, for two sizes (so
    two field layouts): exactly the brute-force pairs, none beyond the radius, none missed."""
    codes = library_codes(np.random.default_rng(n), n)
    for radius in (8, 13, 14):
        np.testing.assert_array_equal(pairs_within(codes, radius, flat_limit=10), brute_force_pairs(codes, radius))


@pytest.mark.parametrize("radius", [16, 20, 24])
def test_multi_index_beyond_radius_15(codes, radius):
    np.testing.assert_array_equal(pairs_within(codes, radius, flat_limit=10), brute_force_pairs(codes, radius))


def test_multi_index_splits_large_blocks(monkeypatch):
    """With tiny FAISS calls (each value's queries split into row blocks, a block wider than the buffer)
    the answer is the same."""
    rng = np.random.default_rng(5)
    codes = np.concatenate([library_codes(rng, 500), np.full(40, 12345, dtype=np.uint64)])
    monkeypatch.setattr(index, "CELLS", 64)
    np.testing.assert_array_equal(pairs_within(codes, 14, flat_limit=10), brute_force_pairs(codes, 14))
    queries = library_codes(rng, 200)
    np.testing.assert_array_equal(neighbours(codes, queries, 14, flat_limit=10), cross_pairs(codes, queries, 14))


@pytest.mark.parametrize("n_base,n_queries", [(10**3, 10**3), (10**5, 10**5), (10**6, 10**6), (10**6, 7 * 10**6)])
@pytest.mark.parametrize("radius", [0, 1, 2, 8, 14, 15, 24])
def test_layout_is_a_pigeonhole(n_base, n_queries, radius):
    """The fields chosen are disjoint and their bit allowances sum to r - m + 1: then a pair within r has
    some field within its allowance, which is why the search misses nothing."""
    fields = index._layout(n_base, n_queries, radius, n_base == n_queries)
    covered = 0
    for shift, bits, _t in fields:
        mask = ((1 << bits) - 1) << shift
        assert covered & mask == 0 and shift + bits <= 64
        covered |= mask
    assert sum(t for _s, _b, t in fields) == radius - len(fields) + 1
    assert any(t >= 0 for _s, _b, t in fields)


def test_lists_trained_on_two_threads_are_the_same_and_threads_restored():
    """The crop stage trains the keypoint lists on the idle workers' threads: the same lists as on one,
    and the searches after it are back on the thread count they had."""
    import faiss

    rng = np.random.default_rng(3)
    centres = rng.integers(0, 256, (64, 32), dtype=np.uint8)
    noise = rng.random((64 * 100, 256)) < 0.05  # descriptors scattered around 64 centres
    data = np.packbits(np.unpackbits(np.repeat(centres, 100, axis=0), axis=1) ^ noise, axis=1)
    before = faiss.omp_get_max_threads()
    one, two = index.trained_lists(data, 64, threads=1), index.trained_lists(data, 64, threads=2)
    assert faiss.omp_get_max_threads() == before
    assert one.is_trained and two.is_trained
    centroids = [faiss.vector_to_array(faiss.downcast_IndexBinary(i.quantizer).xb) for i in (one, two)]
    assert centroids[0].size == 64 * 32
    assert np.array_equal(centroids[0], centroids[1])


def near_pairs(n: int, seed: int) -> np.ndarray:
    """n random descriptors, the second half near copies (3% of bits flipped) of the first."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    data[n // 2 :] = data[: n // 2] ^ np.packbits(rng.random((n // 2, 256)) < 0.03, axis=1)
    return data


def test_large_libraries_get_lists_of_a_fixed_size_found_through_lists(monkeypatch, tmp_path):
    """Beyond LINEAR_FROM descriptors the lists hold LIST_SIZE each and their centroids are themselves
    searched by inverted lists, so a search costs the same at any size; they probe LINEAR_PROBES times
    as many lists, find 95% of the near copies (exhaustive search: all; 4 lists probed: 91%) and keep
    working once saved."""
    import faiss

    monkeypatch.setattr(index, "DESC_FLAT_LIMIT", 1000)
    monkeypatch.setattr(index, "LINEAR_FROM", 8000)
    monkeypatch.setattr(index, "LIST_SIZE", 100)
    data = near_pairs(12_000, 4)
    small = index.inverted_lists(data[:6000], 6000)
    large = index.inverted_lists(data, len(data))
    assert small.nlist == 77 and not isinstance(faiss.downcast_IndexBinary(small.quantizer), faiss.IndexBinaryIVF)
    coarse = faiss.downcast_IndexBinary(large.quantizer)
    assert large.nlist == 120 and isinstance(coarse, faiss.IndexBinaryIVF) and coarse.nlist == 10
    assert index.probes(small, index.NPROBE) == index.NPROBE
    assert index.probes(large, index.NPROBE) == index.NPROBE * index.LINEAR_PROBES
    large.add(data)
    faiss.write_index_binary(large, str(tmp_path / "lists.faiss"))
    saved = faiss.read_index_binary(str(tmp_path / "lists.faiss"), faiss.IO_FLAG_MMAP)
    for got in (large, saved):
        got.nprobe = index.probes(got, index.NPROBE)
        _dist, ids = got.search(data[:6000], 2)
        assert np.mean(ids[:, 1] == np.arange(6000) + 6000) > 0.95


def test_a_saved_layout_fits_until_the_library_outgrows_it(monkeypatch):
    """Exhaustive up to DESC_FLAT_LIMIT descriptors, then square-root lists while within half to twice
    the lists wanted, then linear lists: a library that grew past its saved layout gets a new one."""
    monkeypatch.setattr(index, "DESC_FLAT_LIMIT", 1000)
    monkeypatch.setattr(index, "LINEAR_FROM", 40_000)
    monkeypatch.setattr(index, "LIST_SIZE", 100)
    flat = index.exhaustive_index()
    assert index.layout_fits(flat, 1000) and not index.layout_fits(flat, 1001)
    data = near_pairs(6400, 5)
    lists = index.inverted_lists(data, len(data))
    assert lists.nlist == 80
    assert [index.layout_fits(lists, n) for n in (1000, 1600, 6400, 25_600, 26_000, 40_000)] == [
        False, True, True, True, False, False
    ]
    linear = index.inverted_lists(near_pairs(40_000, 6), 40_000)
    assert index.layout_fits(linear, 40_000) and not index.layout_fits(linear, 39_999)


@pytest.mark.parametrize("block", [1, 3, 40, 1 << 20])
def test_votes_counted_in_parts_and_blocks_equal_counting_them_at_once(monkeypatch, block):
    """Votes come in parts and are counted a block of sorted keys at a time; a block never splits one
    pair's votes, even when they are more than a block: the pairs and the top-partner rule are those of
    counting every vote of every part together."""
    from collections import Counter

    rng = np.random.default_rng(11)
    a = rng.integers(0, 30, 3000)
    b = rng.integers(0, 30, 3000)
    a[:200], b[:200] = 4, 17  # one pair with far more votes than a block
    b[200:260] = (a[200:260] + 1) % 30
    counts = Counter((min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist()) if x != y)
    strong = sorted(((i, j, c) for (i, j), c in counts.items() if c >= 12), key=lambda p: (-p[2], p[0], p[1]))
    kept, expected = Counter(), []
    for i, j, _ in strong:
        if kept[i] < 2 or kept[j] < 2:
            expected.append((i, j))
            kept[i] += 1
            kept[j] += 1
    keep = a != b
    cuts = [0, 7, 1000, 1001, 2500, 3000]
    parts = [(a[lo:hi][keep[lo:hi]].astype(np.int32), b[lo:hi][keep[lo:hi]]) for lo, hi in zip(cuts, cuts[1:])]
    monkeypatch.setattr(index, "COUNT_BLOCK", block)
    assert (4, 17) in expected and len(expected) > 5
    assert index.voted_pairs(lambda: parts, min_votes=12, top=2) == sorted(expected)
    for passes in (2, 3, 7):  # each pass counts the pairs whose lower label falls to it
        assert index.voted_pairs(lambda: iter(parts), min_votes=12, top=2, passes=passes) == sorted(expected)
    assert index.voted_pairs(lambda: [], min_votes=12) == []
