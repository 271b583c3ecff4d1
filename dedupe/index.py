"""Stage 5: candidate pairs, i.e. all pairs of 64-bit codes within a Hamming radius, never all pairs.

Few codes: FAISS compares every pair (SIMD, one call). More: multi-index hashing, exact. The code is cut
into m disjoint fields; by the general pigeonhole principle a pair within radius r differs by at most t_s
bits in some field s, where t_0 + ... + t_(m-1) = r - m + 1 (r = 14, 5 fields: 2 bits each). For each field,
codes are sorted by it, and all the codes whose field value is v are compared, by FAISS in one call, with
the codes whose value is within t_s bits of v. Every distance is computed exactly, and no pair is missed.
1,000,000 codes at r = 14: ~30,000 distances per code instead of 1,000,000 (benchmarks/candidates_1m.py).

FAISS is imported by the functions that use it: `dedupe compare` imports this module (through
candidates) but searches nothing, and FAISS takes 0.1 s to import.
"""

from __future__ import annotations

from contextlib import contextmanager
from math import comb
from typing import Callable, Iterable

import numpy as np

FLAT_LIMIT = 10_000
"""Pairs are searched exhaustively while queries x base codes is at most FLAT_LIMIT**2: the two searches
take the same time at 10,000 codes (0.1 s); at 50,000, 2.5 s exhaustively, 0.5 s by multi-index hashing."""
QUERY_BLOCK = 16_384
"""Queries per range search call, to bound the memory of the result lists."""
CELLS = 1 << 18
"""Distances per FAISS call (1 MB): the result stays in the L2 cache for the threshold pass."""
COST_VALUE, COST_GATHER, COST_DISTANCE = 10e-6, 7.5e-9, 0.5e-9
"""Seconds per field value visited, per code gathered next to a value, per distance computed; measured on
this 2-core machine. Few wide fields compute fewer distances but gather more codes; the layout with the
least estimated time is used."""

_POP16 = np.unpackbits(np.arange(1 << 16, dtype=np.uint16).view(np.uint8)).reshape(-1, 16).sum(axis=1, dtype=np.uint8)
"""Set bits of every 16-bit value, made by numpy: a Python loop over the 65,536 values takes 15 ms at import."""


@contextmanager
def _threads(n: int = 1):
    """FAISS on `n` OpenMP threads, restored afterwards. Searches take one: with a second thread they
    stall when the other core is busy (the crop-matching stage took 0.8 s on the dev corpus alone and
    15-40 s beside another process on this 2-core machine, 3 s with one thread). An index is built on
    as many as there are idle workers: its few long calls do not stall, and the main process builds it
    while the workers wait."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_bytes(codes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).reshape(-1, 1).view(np.uint8))


def popcount64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    return sum(
        _POP16[((x >> np.uint64(s)) & np.uint64(0xFFFF)).astype(np.intp)].astype(np.int64) for s in range(0, 64, 16)
    )


def _range_search(index, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    found_q, found_b = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        lims, _dist, ids = index.range_search(queries[start : start + QUERY_BLOCK], radius + 1)  # strictly below
        counts = np.diff(lims).astype(np.int64)
        found_q.append(np.repeat(np.arange(start, start + len(counts)), counts))
        found_b.append(ids.astype(np.int64))
    return np.concatenate(found_q), np.concatenate(found_b)


def _flat(base: np.ndarray, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexBinaryFlat(64)
    with _threads():
        index.add(_as_bytes(base))
        return _range_search(index, _as_bytes(queries), radius)


def _layout(n_base: int, n_queries: int, radius: int, self_join: bool) -> list[tuple[int, int, int]]:
    """Fields (shift, bits, t) of the cheapest estimated search: m fields over the low `total` bits, narrow
    ones first, each with its share t of r - m + 1 (-1: that field is not searched)."""
    best = (np.inf, [])
    for m in range(2, 9):
        for total in range(4 * m, 65):
            bits = [total // m + (s >= m - total % m) for s in range(m)]
            limits = [(radius - m + 1 + s) // m for s in range(m)]
            cost = 0.0
            for b, t in zip(bits, limits):
                near = sum(comb(b, k) for k in range(t + 1)) / (2 if self_join else 1)
                cost += (t >= 0) * (
                    min(1 << b, n_queries) * COST_VALUE
                    + near * n_base * COST_GATHER
                    + near * n_base * n_queries / (1 << b) * COST_DISTANCE
                )
            if cost < best[0]:
                shifts = np.cumsum([0, *bits[:-1]]).tolist()
                best = (cost, list(zip(shifts, bits, limits)))
    return best[1]


class _Sorted:
    """Codes sorted by one field, and where the run of each field value starts."""

    def __init__(self, codes: np.ndarray, shift: int, bits: int) -> None:
        key = ((codes >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.intp)
        self.order = np.argsort(key, kind="stable")
        self.codes = codes[self.order]
        self.start = np.zeros((1 << bits) + 1, np.intp)
        np.cumsum(np.bincount(key, minlength=1 << bits), out=self.start[1:])


def _field_pairs(base: _Sorted, queries: _Sorted, masks: np.ndarray, radius: int, self_join: bool):
    """Sorted positions (query, base) of the pairs within `radius` whose field differs by one of `masks`,
    a block of field values at a time.

    For each field value v the base runs at v ^ mask are gathered into one array, and FAISS computes the
    distances of all the queries at v to it. In a self-join only runs at values >= v are gathered and
    a pair counts when its base position is after its query position: each pair is met once."""
    import faiss

    address = faiss.cast_integer_to_uint8_ptr  # pointers without slicing: millions of calls
    run = np.diff(base.start)
    values = len(run)
    chunk = int(np.clip(CELLS * values // (len(masks) * len(base.codes)), 1, values))
    dist, low = np.empty(CELLS, np.int32), np.empty(CELLS, np.int32)
    q_address = queries.codes.ctypes.data
    for v0 in range(0, values, chunk):
        v1 = min(v0 + chunk, values)
        near = np.arange(v0, v1)[:, None] ^ masks[None, :]
        lens = run[near]
        if self_join:
            lens[near < near[:, :1]] = 0
        lens = lens.ravel()
        ends = np.cumsum(lens)
        gathered = np.arange(ends[-1])
        gathered += np.repeat(base.start[near.ravel()] - (ends - lens), lens)
        codes = base.codes[gathered]
        g_address = codes.ctypes.data
        g_start = [0, *ends[len(masks) - 1 :: len(masks)].tolist()]
        q_start = queries.start[v0 : v1 + 1].tolist()
        hit_q, hit_g = [], []
        for k in range(v1 - v0):
            a, b, g0 = q_start[k], q_start[k + 1], g_start[k]
            width = g_start[k + 1] - g0
            if a == b or width == 0:
                continue
            if width > len(dist):
                dist, low = np.empty(width, np.int32), np.empty(width, np.int32)
            rows = len(dist) // width
            g_codes, out = address(g_address + 8 * g0), faiss.swig_ptr(dist)
            for a1 in range(a, b, rows):
                n = min(rows, b - a1)
                faiss.hammings(address(q_address + 8 * a1), g_codes, n, width, 8, out)
                d = dist[: n * width].reshape(n, width)
                cols = np.flatnonzero(np.minimum.reduce(d, axis=0, out=low[:width]) <= radius)  # few
                r, c = np.nonzero(d[:, cols] <= radius)
                hit_q.append(a1 + r)
                hit_g.append(g0 + cols[c])
        if hit_q:
            q, b = np.concatenate(hit_q), gathered[np.concatenate(hit_g)]
            yield (q[b > q], b[b > q]) if self_join else (q, b)


def _multi_index(base: np.ndarray, queries: np.ndarray | None, radius: int) -> np.ndarray:
    """The keys q * len(base) + b of every (query, base) pair within the radius, once, in no order; with
    `queries` None, of every pair i < j of the base. Keys take half the memory of pairs of indices."""
    self_join = queries is None
    queries = base if self_join else queries
    fields = _layout(len(base), len(queries), radius, self_join)
    keys = []
    for s, (shift, bits, t) in enumerate(fields):
        if t < 0:
            continue
        sorted_b = _Sorted(base, shift, bits)
        sorted_q = sorted_b if self_join else _Sorted(queries, shift, bits)
        masks = np.flatnonzero(popcount64(np.arange(1 << bits, dtype=np.uint64)) <= t)  # 0 first
        with _threads():
            for q, b in _field_pairs(sorted_b, sorted_q, masks, radius, self_join):
                q, b = sorted_q.order[q], sorted_b.order[b]
                x = queries[q] ^ base[b]
                keep = np.ones(len(q), bool)
                for shift2, bits2, t2 in fields[:s]:  # an earlier field finds these
                    keep &= popcount64((x >> np.uint64(shift2)) & np.uint64((1 << bits2) - 1)) > t2
                q, b = q[keep], b[keep]
                if self_join:
                    q, b = np.minimum(q, b), np.maximum(q, b)
                keys.append(q * len(base) + b)
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def _sorted_pairs(keys: np.ndarray, n_b: int) -> np.ndarray:
    keys.sort()
    out = np.empty((len(keys), 2), np.int64)
    np.divmod(keys, n_b, out=(out[:, 0], out[:, 1]))
    return out


def neighbours(base: np.ndarray, queries: np.ndarray, radius: int, flat_limit: int = FLAT_LIMIT) -> np.ndarray:
    """All (q, b) with Hamming(queries[q], base[b]) <= radius, sorted."""
    base = np.ascontiguousarray(base, dtype=np.uint64)
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    if not len(base) or not len(queries):
        return np.zeros((0, 2), np.int64)
    if len(base) * len(queries) > flat_limit**2:
        return _sorted_pairs(_multi_index(base, queries, radius), len(base))
    q, b = _flat(base, queries, radius)
    return _sorted_pairs(q * len(base) + b, len(base))


def pairs_within(codes: np.ndarray, radius: int, flat_limit: int = FLAT_LIMIT) -> np.ndarray:
    """Sorted unique (i, j), i < j, of codes whose Hamming distance is at most `radius`."""
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    if len(codes) < 2:
        return np.zeros((0, 2), np.int64)
    if len(codes) > flat_limit:
        return _sorted_pairs(_multi_index(codes, None, radius), len(codes))
    i, j = _flat(codes, codes, radius)
    return _sorted_pairs(i[i < j] * len(codes) + j[i < j], len(codes))


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


LINEAR_FROM = 6_000_000
"""Descriptors (about 60,000 photos) from which inverted lists hold LIST_SIZE descriptors each, found
through lists of their own (linear_lists), instead of sqrt(n) lists searched whole: the crop stage's
search then grows as n, not n^1.5. Measured on the 9.6 million descriptors of 100,000 generated photos
(2,000 sampled descriptors' nearest of another picture against an exhaustive search): 3,098 square-root
lists probed 4 at a time agree on 83.2% of them for 600-700 core-seconds of search, 9,375 linear lists
probed 8 at a time on 86.1% for 420; on the first 40,000 of those photos, 80.8% for 170 against 88.6%
for 215. At a million photos the square-root lists would be 23,000 descriptors long (4,000 lists: their
training costs lists squared), 9 times the linear lists' search for each descriptor."""
LIST_SIZE = 1024
LINEAR_PROBES = 2
"""Linear lists probe this many times as many lists as square-root lists would: there are more of them,
and smaller (8 instead of 4 for the crop stage, for the agreement above)."""
COARSE_PROBES = 8
"""Lists (of about sqrt(nlist) centroids each) searched for the nearest centroids of linear lists: 0.3 s
for 100,000 descriptors on 2 threads."""


def lists_for(n: int) -> int:
    """Inverted lists for n descriptors: none (exhaustive) up to DESC_FLAT_LIMIT; sqrt(n) up to
    LINEAR_FROM, so that a search reads about as many centroids as descriptors in the lists it probes;
    LIST_SIZE descriptors a list beyond."""
    if n <= DESC_FLAT_LIMIT:
        return 0
    return int(np.sqrt(n)) if n < LINEAR_FROM else n // LIST_SIZE


def inverted_lists(data: np.ndarray, n: int, threads: int = 1):
    """An empty inverted-lists index for n (more than DESC_FLAT_LIMIT) 256-bit descriptors like `data`
    (all of them, or for linear lists at least training_size of them), as many lists as lists_for says."""
    nlist = lists_for(n)
    return trained_lists(data, nlist, threads) if n < LINEAR_FROM else linear_lists(data, nlist, threads)


def layout_fits(index, n: int) -> bool:
    """Whether a saved index (exhaustive, or inverted lists) still suits n descriptors: the same kind,
    and within half to twice the lists lists_for(n) asks for. A library grown from a few hundred photos
    to a hundred thousand would otherwise search its exhaustive index, or its few long lists, forever."""
    import faiss

    want = lists_for(n)
    if not isinstance(index, faiss.IndexBinaryIVF):
        return want == 0
    return want > 0 and (n >= LINEAR_FROM) == _linear(index) and want / 2 <= index.nlist <= want * 2


def probes(index, nprobe: int) -> int:
    """Lists to probe in `index` for the agreement `nprobe` gives in square-root lists."""
    return nprobe * LINEAR_PROBES if _linear(index) else nprobe


def _linear(index) -> bool:
    import faiss

    return isinstance(faiss.downcast_IndexBinary(index.quantizer), faiss.IndexBinaryIVF)


def exhaustive_index():
    """An empty index that compares every 256-bit descriptor, searched without a heap (several times
    faster for small k)."""
    import faiss

    index = faiss.IndexBinaryFlat(256)
    index.use_heap = False
    return index


def trained_lists(data: np.ndarray, nlist: int, threads: int = 1):
    """An empty index of `nlist` inverted lists for 256-bit descriptors like `data`, trained with 4 k-means
    iterations on a sample of 40 per list (on `threads` threads): the lists only need to be roughly
    right, recall comes from the lists probed. FAISS clusters binary codes as 256 floats; on scale5000's
    465,000 descriptors, 8 iterations took 1.4 s of the main process while the workers waited, 4 take
    0.65 s (0.36 s on 2 threads), and the nearest descriptor of another picture found for 20,000 sampled
    ones was the same as often (88.4%; random centroids, 85.1%)."""
    import faiss

    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, nlist)
    index.cp.niter = 4
    sample = np.random.default_rng(0).choice(len(data), min(len(data), 40 * nlist), replace=False)
    with _threads(threads):
        index.train(data[np.sort(sample)])
    return index


def training_size(nlist: int) -> int:
    """Descriptors linear lists are trained on: 20 a list, at most 2^18 (FAISS clusters them as floats)."""
    return min(20 * nlist, 1 << 18)


def linear_lists(data: np.ndarray, nlist: int, threads: int = 1):
    """An empty index of `nlist` inverted lists (about LIST_SIZE descriptors each) for 256-bit descriptors
    like `data`, whose centroids are themselves found through sqrt(nlist) inverted lists: searching
    9,375 centroids whole for each descriptor would cost as much as its lists. Trained with 4 k-means
    iterations on 20 descriptors a list (at most 2^18: FAISS clusters them as floats, 1 KB each), each
    assigned through a graph of the centroids: 9 s for 9,375 lists on 2 threads."""
    import faiss

    lists = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, nlist)
    lists.cp.niter, lists.cp.min_points_per_centroid = 4, 1
    assign = faiss.IndexHNSWFlat(256, 16)  # held here: FAISS keeps only a pointer
    lists.clustering_index = assign
    sample = np.random.default_rng(0).choice(len(data), min(len(data), training_size(nlist)), replace=False)
    with _threads(threads):
        lists.train(data[np.sort(sample)])
        centroids = faiss.vector_to_array(faiss.downcast_IndexBinary(lists.quantizer).xb).reshape(nlist, 32)
        coarse = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, int(np.sqrt(nlist)))
        coarse.cp.min_points_per_centroid = 1  # sqrt(nlist) a list: enough, and no warning printed
        coarse.train(centroids)
        coarse.add(centroids)
    coarse.nprobe = COARSE_PROBES  # saved with the index
    return faiss.IndexBinaryIVF(coarse, 256, nlist)


NPROBE = 4
"""Inverted lists searched per descriptor by the crop stage, which searches every descriptor."""
K = 8
"""Neighbours of a descriptor looked at: enough to reach past a picture's own copies."""
MAX_DISTANCE = 64
"""Bits (of 256) within which a neighbouring descriptor counts as the same keypoint."""
MIN_VOTES = 12
"""Votes a pair of pictures needs to be checked by geometry. On the scale-5000 corpus the crops that
held had 16 votes or more, while most of the 7,000 pairs that failed their geometry had 8 to 15: each
such check costs about 3 ms."""


def keypoint_votes(
    index, queries: np.ndarray, query_owner: np.ndarray, owner: np.ndarray, max_distance: int = MAX_DISTANCE, k: int = K
) -> tuple[np.ndarray, np.ndarray]:
    """(voter label, voted label) for every query descriptor (owned by query_owner) whose nearest
    neighbour in `index` under another label is within `max_distance`; owner[id] is the label of the
    index's descriptor id (nearest_other)."""
    import faiss

    if isinstance(index, faiss.IndexBinaryIVF):
        index.nprobe = probes(index, NPROBE)
    votes_a, votes_b = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    with _threads():
        for lo in range(0, len(queries), QUERY_BLOCK):
            hi = min(len(queries), lo + QUERY_BLOCK)
            dist, ids = index.search(queries[lo:hi], k)
            q_owner = np.asarray(query_owner[lo:hi], np.int64)
            target, _ = nearest_other(dist, ids, q_owner, owner, max_distance)
            has = target >= 0
            votes_a.append(q_owner[has])
            votes_b.append(np.asarray(owner)[target[has]].astype(np.int64))
    return np.concatenate(votes_a), np.concatenate(votes_b)


def nearest_other(
    dist: np.ndarray, ids: np.ndarray, query_label: np.ndarray, label, max_distance: int = MAX_DISTANCE
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a k-nearest search (ids -1 where there are fewer), the id of the nearest
    neighbour whose label (label[id]) is not the query's, within `max_distance`, and its distance;
    -1 and 0 for none. This is what a keypoint votes for: looking past the neighbours under its own
    label is how a picture's votes are not split between its copies, which share its label."""
    rows = np.arange(len(ids))
    owner = np.where(ids >= 0, np.asarray(label)[np.maximum(ids, 0)], -1).astype(np.int64)
    usable = (ids >= 0) & (owner != np.asarray(query_label, np.int64)[:, None]) & (dist <= max_distance)
    first = np.argmax(usable, axis=1)
    has = usable[rows, first]
    return np.where(has, ids[rows, first], -1).astype(np.int64), np.where(has, dist[rows, first], 0).astype(np.uint8)


COUNT_BLOCK = 1 << 20
"""Sorted votes counted at a time: np.unique of all 6.7 million votes of 100,000 photos at once held
several copies of them (about 370 MB with the label arrays around it)."""


PASS_VOTES = 1 << 22
"""Votes counted in one pass over them. Beyond, each pass keeps the pairs whose lower label falls to it
(label % passes), so that about this many keys (32 MB) are held at once: the keys of the 6.7 million votes
of 100,000 photos were 54 MB, and would be ten times that at a million."""


def voted_pairs(
    votes: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    min_votes: int = MIN_VOTES,
    top: int = 4,
    passes: int = 1,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of labels (below 2^31) with `min_votes` votes both ways together among the
    votes that `votes()` gives, parts of (voter label, voted label) arrays, anew for each of `passes`
    passes; each label keeps its `top` best partners. A vote is kept as one 64-bit key, 8 bytes, while the
    parts come; the keys are sorted in place and counted COUNT_BLOCK at a time."""
    pairs = []
    for turn in range(passes):
        parts = []
        for a, b in votes():
            low, high = np.minimum(a, b).astype(np.int64), np.maximum(a, b)
            mine = low % passes == turn
            low, high = low[mine], high[mine]
            low <<= 32
            low |= high
            parts.append(low)
        pairs += _counted(parts, min_votes)
    kept: dict[int, int] = {}
    out = []
    for i, j, _c in sorted(pairs, key=lambda p: (-p[2], p[0], p[1])):
        if kept.get(i, 0) < top or kept.get(j, 0) < top:
            out.append((i, j))
            kept[i] = kept.get(i, 0) + 1
            kept[j] = kept.get(j, 0) + 1
    return sorted(out)


def _counted(parts: list[np.ndarray], min_votes: int) -> list[tuple[int, int, int]]:
    """(i, j, votes) of the keys (i << 32 | j) found `min_votes` times or more among `parts`, which are
    let go as they are copied into one array: no second copy of them all."""
    keys = np.empty(sum(len(p) for p in parts), np.int64)
    at = 0
    while parts:
        part = parts.pop()
        keys[at : at + len(part)] = part
        at += len(part)
    keys.sort()
    pairs = []
    lo = 0
    while lo < len(keys):
        hi = min(len(keys), lo + COUNT_BLOCK)
        if hi < len(keys):  # a block ends where a key does
            hi = int(np.searchsorted(keys, keys[hi], side="left"))
            if hi <= lo:  # one key's votes are more than a block
                hi = int(np.searchsorted(keys, keys[lo], side="right"))
        found, counts = np.unique(keys[lo:hi], return_counts=True)
        strong = counts >= min_votes
        pairs += [(int(k >> 32), int(k & 0xFFFFFFFF), int(c)) for k, c in zip(found[strong], counts[strong])]
        lo = hi
    return pairs
