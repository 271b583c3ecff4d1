"""The candidate stage at scale: `dedupe.index.pairs_within` on N synthetic 64-bit hashes.

The codes look like a photo library's pHashes: each random code has 32 ones of 64 (a pHash compares 64
DCT coefficients with their median), and a fifth of the codes are near copies, in groups of 2-12 around
an original, each copy some bits away from it: mostly 0-8, sometimes 9-18, so that some fall outside the
radius. The search runs in a fresh process, whose time and peak RSS are printed; recall is measured against
an exact search of a random sample of the codes against all of them.

    python benchmarks/candidates_1m.py                      # N = 1,000,000, radius 14
    python benchmarks/candidates_1m.py --n 50000 --queries 5000
    python benchmarks/candidates_1m.py --neighbours 7       # also neighbours(): 7 queries per code
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPED = 0.2
"""Share of the codes that are copies in a group."""


def weight_32(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random codes with exactly 32 ones."""
    out = np.empty(n, np.uint64)
    for start in range(0, n, 1 << 16):
        r = rng.random((min(1 << 16, n - start), 64), dtype=np.float32)
        bits = r > np.median(r, axis=1, keepdims=True)
        out[start : start + len(r)] = np.packbits(bits, axis=1).view(">u8").ravel()
    return out


def flip(rng: np.random.Generator, codes: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Each code with `distance` random bits flipped."""
    out = codes.copy()
    for start in range(0, len(codes), 1 << 16):
        d = distance[start : start + (1 << 16)]
        rank = np.argsort(np.argsort(rng.random((len(d), 64)), axis=1), axis=1)
        mask = np.packbits(rank < d[:, None], axis=1).view(">u8").ravel()
        out[start : start + len(d)] ^= mask.astype(np.uint64)
    return out


def library(n: int, seed: int) -> np.ndarray:
    """n codes: random ones, and groups of near copies of some of them, shuffled."""
    rng = np.random.default_rng(seed)
    codes = weight_32(rng, n)
    sizes = rng.integers(2, 13, size=max(1, int(n * GROUPED) // 6))
    sizes = sizes[np.cumsum(sizes) <= n * GROUPED]
    copy_of = np.repeat(np.arange(len(sizes)), sizes - 1)  # code g is the original of group g
    near = rng.random(len(copy_of)) < 0.85
    distance = np.where(near, np.minimum(rng.geometric(0.3, len(copy_of)) - 1, 8), rng.integers(9, 19, len(copy_of)))
    codes[len(sizes) : len(sizes) + len(copy_of)] = flip(rng, codes[copy_of], distance)
    return codes[rng.permutation(n)]


def _timed(job: str, codes: np.ndarray, radius: int, queries: np.ndarray | None, out) -> None:
    """Run in a fresh process: the search, its time and the process's peak RSS."""
    from dedupe.index import neighbours, pairs_within

    start = time.perf_counter()
    found = pairs_within(codes, radius) if job == "pairs" else neighbours(codes, queries, radius)
    seconds = time.perf_counter() - start
    out.send((found, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def run_fresh(job: str, codes: np.ndarray, radius: int, queries: np.ndarray | None = None):
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_timed, args=(job, codes, radius, queries, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


def exact_sample(codes: np.ndarray, sample: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sampled code, other code, distance) of every pair within the radius that has a sampled code, by
    FAISS's exhaustive search."""
    import faiss

    from dedupe.index import _as_bytes

    faiss.omp_set_num_threads(1)
    index = faiss.IndexBinaryFlat(64)
    index.add(_as_bytes(codes))
    lims, dist, other = index.range_search(_as_bytes(codes[sample]), radius + 1)
    q = np.repeat(sample, np.diff(lims).astype(np.int64))
    keep = other != q
    return q[keep], other[keep], dist[keep]


def recall(pairs: np.ndarray, codes: np.ndarray, sample: np.ndarray, radius: int) -> None:
    from dedupe.index import popcount64

    n = len(codes)
    beyond = int((popcount64(codes[pairs[:, 0]] ^ codes[pairs[:, 1]]) > radius).sum())
    print(f"pairs beyond the radius: {beyond}")
    start = time.perf_counter()
    q, other, dist = exact_sample(codes, sample, radius)
    truth = np.minimum(q, other) * n + np.maximum(q, other)
    found = np.isin(truth, pairs[:, 0] * n + pairs[:, 1])
    print(f"exact search of {len(sample):,} sampled codes against all: {time.perf_counter() - start:.0f} s")
    print(f"recall: {found.mean() if len(found) else 1.0:.5f} ({found.sum():,} of {len(found):,} pairs)")
    print("distance     pairs   recall")
    for d in range(radius + 1):
        at = dist == d
        if at.any():
            print(f"{d:8d} {at.sum():9,d}  {found[at].mean():.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="codes (default 1,000,000)")
    parser.add_argument("--radius", type=int, default=14, help="Hamming radius (default 14, Settings.hash_radius)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=20_000, help="codes sampled for the exact search")
    parser.add_argument(
        "--neighbours", type=int, default=0, metavar="K", help="also time neighbours() with K*N turned-like queries"
    )
    args = parser.parse_args()

    codes = library(args.n, args.seed)
    print(f"{args.n:,} codes, radius {args.radius}, seed {args.seed}, {np.bitwise_count(codes).mean():.1f} ones")
    pairs, seconds, rss = run_fresh("pairs", codes, args.radius)
    print(f"pairs_within: {seconds:.2f} s, peak RSS {rss / 2**20:.0f} MiB, {len(pairs):,} pairs")
    sample = np.random.default_rng(args.seed + 1).choice(args.n, min(args.queries, args.n), replace=False)
    recall(pairs, codes, sample, args.radius)

    if args.neighbours:
        # turned pHashes are other codes: random ones, and near copies of some base codes (turned copies)
        rng = np.random.default_rng(args.seed + 2)
        queries = weight_32(rng, args.neighbours * args.n)
        turned = rng.choice(len(queries), len(queries) // 50, replace=False)
        queries[turned] = flip(rng, rng.choice(codes, len(turned)), rng.integers(0, 9, len(turned)))
        found, seconds, rss = run_fresh("neighbours", codes, args.radius, queries)
        print(f"neighbours ({len(queries):,} queries): {seconds:.2f} s, peak RSS {rss / 2**20:.0f} MiB, {len(found):,}")


if __name__ == "__main__":
    main()
