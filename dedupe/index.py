"""Stage 5: candidate pairs, i.e. all pairs of 64-bit codes within a Hamming radius, never all pairs.

FAISS's exact binary index does the radius search in SIMD code; past FLAT_LIMIT codes a multi-hash index
(pigeonhole on 8 substrings of 8 bits: a pair within radius r < 16 agrees on some substring up to one
flip) proposes pairs that are then checked exactly. `brute_force_pairs` is the reference for tests.
"""

from __future__ import annotations

import faiss
import numpy as np

FLAT_LIMIT = 200_000
QUERY_BLOCK = 16_384
"""Queries per range search call, to bound the memory of the result lists."""


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
