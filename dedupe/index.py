"""Stage 5: candidate pairs, i.e. all pairs of 64-bit codes within a Hamming radius, never all pairs.

FAISS's exact binary index does the radius search in SIMD code; past FLAT_LIMIT codes a multi-hash index
(pigeonhole on 8 substrings of 8 bits: a pair within radius r < 16 agrees on some substring up to one
flip) proposes pairs that are then checked exactly. `brute_force_pairs` is the reference for tests.
"""

from __future__ import annotations

from contextlib import contextmanager

import faiss
import numpy as np

FLAT_LIMIT = 200_000
QUERY_BLOCK = 16_384
"""Queries per range search call, to bound the memory of the result lists."""


@contextmanager
def _one_thread():
    """FAISS searches on one OpenMP thread, restored afterwards. With a second thread it stalls when the
    other core is busy: the crop-matching stage took 0.8 s on the dev corpus alone and 15-40 s beside
    another process on this 2-core machine, 3 s with one thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_bytes(codes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).reshape(-1, 1).view(np.uint8))


def popcount64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    return np.unpackbits(x.reshape(-1, 1).view(np.uint8), axis=1).sum(axis=1).astype(np.int64)


def _normalise(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    keep = i != j
    pairs = np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1).astype(np.int64)
    if not len(pairs):
        return pairs.reshape(0, 2)
    return np.unique(pairs, axis=0)


def _range_search(index, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    found_q, found_b = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        lims, _dist, ids = index.range_search(queries[start : start + QUERY_BLOCK], radius + 1)  # strictly below
        counts = np.diff(lims).astype(np.int64)
        found_q.append(np.repeat(np.arange(start, start + len(counts)), counts))
        found_b.append(ids.astype(np.int64))
    if not found_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(found_q), np.concatenate(found_b)


def neighbours(base: np.ndarray, queries: np.ndarray, radius: int, flat_limit: int = FLAT_LIMIT) -> np.ndarray:
    """All (q, b) with Hamming(queries[q], base[b]) <= radius, sorted."""
    base = np.asarray(base, dtype=np.uint64)
    queries = np.asarray(queries, dtype=np.uint64)
    if not len(base) or not len(queries):
        return np.zeros((0, 2), np.int64)
    if len(base) <= flat_limit or radius >= 16:
        index = faiss.IndexBinaryFlat(64)
    else:
        index = faiss.IndexBinaryMultiHash(64, 8, 8)
        index.nflip = 1
    with _one_thread():
        index.add(_as_bytes(base))
        q, b = _range_search(index, _as_bytes(queries), radius)
    keep = popcount64(queries[q] ^ base[b]) <= radius  # the multi-hash index proposes; this decides
    found = np.stack([q[keep], b[keep]], axis=1)
    return found[np.lexsort((found[:, 1], found[:, 0]))]


def pairs_within(codes: np.ndarray, radius: int, flat_limit: int = FLAT_LIMIT) -> np.ndarray:
    """Sorted unique (i, j), i < j, of codes whose Hamming distance is at most `radius`."""
    found = neighbours(codes, codes, radius, flat_limit)
    return _normalise(found[:, 0], found[:, 1])


def brute_force_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """Every pair compared: the reference the index is tested against."""
    codes = np.asarray(codes, dtype=np.uint64)
    out = []
    for i in range(len(codes) - 1):
        d = popcount64(codes[i] ^ codes[i + 1 :])
        for k in np.flatnonzero(d <= radius):
            out.append((i, i + 1 + int(k)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


DESC_FLAT_LIMIT = 20_000
"""Descriptors searched exhaustively up to this many (a few hundred images); beyond, an inverted-file
index probes the nearest lists: 35,000 descriptors take 0.15 s instead of 12 s exhaustively."""


def _descriptor_index(data: np.ndarray):
    """A FAISS index of 256-bit descriptors: exhaustive when small, inverted lists beyond."""
    if len(data) <= DESC_FLAT_LIMIT:
        index = faiss.IndexBinaryFlat(256)
        index.use_heap = False  # several times faster for small k
    else:
        nlist = int(np.sqrt(len(data)))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, nlist)
        sample = np.random.default_rng(0).choice(len(data), min(len(data), 40 * nlist), replace=False)
        index.train(data[np.sort(sample)])
        index.nprobe = 6
    index.add(data)
    return index


def _nearest_votes(index, data: np.ndarray, owner: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """(voter label, voted label) for every descriptor whose nearest neighbour under another label is
    within `max_distance`."""
    k = 8  # enough to reach past a picture's own copies, which share its label
    votes_a, votes_b = [], []
    for start in range(0, len(data), QUERY_BLOCK):
        dist, ids = index.search(data[start : start + QUERY_BLOCK], k)
        q_owner = owner[start : start + len(ids)]
        nn_owner = np.where(ids >= 0, owner[np.maximum(ids, 0)], -1)
        usable = (nn_owner != q_owner[:, None]) & (nn_owner >= 0) & (dist <= max_distance)
        first = np.argmax(usable, axis=1)  # the nearest neighbour under another label
        has = usable[np.arange(len(ids)), first]
        votes_a.append(q_owner[has])
        votes_b.append(nn_owner[np.arange(len(ids)), first][has])
    return np.concatenate(votes_a), np.concatenate(votes_b)


def keypoint_pairs(
    desc_sets: list[np.ndarray],
    labels: np.ndarray | None = None,
    max_distance: int = 64,
    min_votes: int = 8,
    top: int = 4,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of labels whose descriptor sets share many near-identical keypoints.

    Each set has a label (by default its own index; sets of copies of one picture share one). Each
    descriptor votes for the label owning its nearest neighbour under another label (within
    `max_distance` of 256 bits), so votes for a picture are not split between its copies; a pair needs
    `min_votes` votes both ways together, and each label keeps its `top` best partners. This is how
    crops, which hashes of the whole frame miss, become candidates.
    """
    labels = np.arange(len(desc_sets)) if labels is None else np.asarray(labels, dtype=np.int64)
    sizes = np.array([len(d) for d in desc_sets], dtype=np.int64)
    if len(np.unique(labels[sizes > 0])) < 2:
        return []
    data = np.ascontiguousarray(np.concatenate([d for d in desc_sets if len(d)]).astype(np.uint8))
    owner = np.repeat(labels, sizes)
    n_labels = int(labels.max()) + 1
    with _one_thread():
        a, b = _nearest_votes(_descriptor_index(data), data, owner, max_distance)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys, counts = np.unique(lo * n_labels + hi, return_counts=True)
    strong = counts >= min_votes
    pairs = [(int(key // n_labels), int(key % n_labels), int(c)) for key, c in zip(keys[strong], counts[strong])]
    kept: dict[int, int] = {}
    out = []
    for i, j, _c in sorted(pairs, key=lambda p: (-p[2], p[0], p[1])):
        if kept.get(i, 0) < top or kept.get(j, 0) < top:
            out.append((i, j))
            kept[i] = kept.get(i, 0) + 1
            kept[j] = kept.get(j, 0) + 1
    return sorted(out)
