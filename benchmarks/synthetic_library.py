"""A large library of small, distinct generated pictures, for timing what grows with the number of files.

Usage: python benchmarks/synthetic_library.py DEST [--count N] [--jobs J]

Writes N JPEGs (200x150, about 12 KB each) in folders of 1,000: smooth random colour fields with fine
texture, noise and a few lines, each from its own seed, so no two are alike. There are no planted copies:
the library measures walking, caching, candidate search and the crop stage at a size the scale corpus
does not reach (100,000 files: about 1.2 GB, a few minutes to write), not accuracy.
"""

from __future__ import annotations

import argparse
import os
from multiprocessing import Pool

import cv2
import numpy as np

PER_FOLDER = 1000


def _folder(job: tuple[str, int, int]) -> int:
    dest, folder, count = job
    rng = np.random.default_rng(folder)
    path = os.path.join(dest, f"{folder // 10:03d}", f"{folder:04d}")
    os.makedirs(path, exist_ok=True)
    for n in range(count):
        coarse = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (200, 150), interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(rng.random((30, 40, 3)).astype(np.float32), (200, 150), interpolation=cv2.INTER_LINEAR)
        img = np.clip((0.7 * coarse + 0.3 * fine) * 255 + rng.normal(0, 4, (150, 200, 3)), 0, 255).astype(np.uint8)
        for _ in range(4):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            a, b = (tuple(int(v) for v in rng.integers(0, 200, 2)) for _ in range(2))
            cv2.line(img, a, b, colour, int(rng.integers(1, 5)))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        with open(os.path.join(path, f"IMG_{n:04d}.jpg"), "wb") as fh:
            fh.write(buf.tobytes())
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    jobs = [
        (args.dest, f, min(PER_FOLDER, args.count - f * PER_FOLDER)) for f in range(-(-args.count // PER_FOLDER))
    ]
    with Pool(args.jobs) as pool:
        print(sum(pool.map(_folder, jobs)), "pictures in", args.dest)


if __name__ == "__main__":
    main()
