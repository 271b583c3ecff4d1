"""Edits at strengths the kit's corpora do not have: does verification still match the copy, and never another photo?

Usage: python benchmarks/edit_sweep.py [--corpus DIR] [--count N] [--seed N]

The kit's generator applies each kind of edit at one strength per profile (the dev corpus darkens by 0.85, HARDER by
0.7), and the libraries accuracy is judged on use others. This takes N originals of a corpus (truth.json's), makes
each edit of EDITS from each in memory, and asks the scan's own pair check (match.confirm, as is, no turn) whether the
copy is the same picture as its original, and whether it is the same picture as another original (it must not be).
Darkening by half was found this way: 30 of the dev corpus's 31 originals were missed (fixed in 764dfb6).
Originals are drafted to a quarter of their size first, as the thumbnails they become do not need more.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from dedupe.config import Settings
from dedupe.decode import decode
from dedupe.features.hashes import describe
from dedupe.match import confirm
from dedupe.model import Analysed


def _thumb(im: Image.Image, side: int) -> Image.Image:
    im = im.copy()
    im.thumbnail((side, side))
    return im


def _crop(im: Image.Image, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
    w, h = im.size
    return im.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))


def _noise(im: Image.Image, sigma: float) -> Image.Image:
    a = np.asarray(im, np.float32) + np.random.default_rng(1).normal(0, sigma, (im.height, im.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _web_chain(im: Image.Image) -> Image.Image:
    """Cropped by 5% each side, reduced to 800 pixels, a little more contrast (then saved at q60)."""
    return ImageEnhance.Contrast(_thumb(_crop(im, 0.05, 0.05, 0.95, 0.95), 800)).enhance(1.1)


EDITS = {
    "bright x0.3": (lambda im: ImageEnhance.Brightness(im).enhance(0.3), 90),
    "bright x0.45": (lambda im: ImageEnhance.Brightness(im).enhance(0.45), 90),
    "bright x1.7": (lambda im: ImageEnhance.Brightness(im).enhance(1.7), 90),
    "contrast x0.3": (lambda im: ImageEnhance.Contrast(im).enhance(0.3), 90),
    "contrast x2.5": (lambda im: ImageEnhance.Contrast(im).enhance(2.5), 90),
    "gamma 0.5": (lambda im: im.point(lambda v: round(255 * (v / 255) ** 0.5)), 90),
    "gamma 2": (lambda im: im.point(lambda v: round(255 * (v / 255) ** 2)), 90),
    "saturation x0": (lambda im: ImageEnhance.Color(im).enhance(0.0), 90),
    "saturation x2.5": (lambda im: ImageEnhance.Color(im).enhance(2.5), 90),
    "jpeg q8": (lambda im: im, 8),
    "thumbnail 96 px": (lambda im: _thumb(im, 96), 85),
    "crop 63% centre": (lambda im: _crop(im, 0.103, 0.103, 0.897, 0.897), 90),
    "crop 63% corner": (lambda im: _crop(im, 0.0, 0.0, 0.794, 0.794), 90),
    "black frame 20%": (lambda im: ImageOps.expand(im, border=int(0.2 * max(im.size)), fill=(0, 0, 0)), 90),
    "blur 0.5%": (lambda im: im.filter(ImageFilter.GaussianBlur(0.005 * max(im.size))), 90),
    "noise 25": (lambda im: _noise(im, 25), 90),
    "web chain q60": (_web_chain, 60),
}
"""Edit name -> (what it does to the picture, the JPEG quality it is saved at)."""


def analysed(im: Image.Image, quality: int) -> Analysed:
    """The picture as the scan sees a JPEG of it."""
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    gray, info = decode(buf.getvalue(), 10**9)
    return Analysed("", info, describe(gray, True))


def originals(corpus: Path, count: int, seed: int) -> list[Path]:
    truth = json.loads((corpus / "truth.json").read_text("utf-8"))
    paths = [m["path"] for g in truth["groups"] for m in g["members"] if m["kind"] == "original"]
    return [corpus / "images" / p for p in random.Random(seed).sample(paths, min(count, len(paths)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path.home() / ".cache/dedupe-bench/dev")
    ap.add_argument("--count", type=int, default=30, help="originals to edit (default 30)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    settings = Settings()
    pictures = []
    for path in originals(args.corpus, args.count, args.seed):
        im = Image.open(path)
        im.draft("RGB", (im.width // 4, im.height // 4))
        pictures.append((path, im.convert("RGB")))
    found, false = dict.fromkeys(EDITS, 0), dict.fromkeys(EDITS, 0)
    missed: dict[str, list[str]] = {name: [] for name in EDITS}
    plain = [analysed(im, 90) for _, im in pictures]
    for n, (path, im) in enumerate(pictures):
        other = plain[(n + 1) % len(plain)]
        for name, (edit, quality) in EDITS.items():
            copy = analysed(edit(im), quality)
            if confirm(plain[n], copy, [0], settings) is not None:
                found[name] += 1
            else:
                missed[name].append(path.name)
            false[name] += confirm(other, copy, [0], settings) is not None
    print(f"{args.corpus}: {len(pictures)} originals; each edit's copy against its original, then against another")
    print(f"  {'edit':18} {'matched':>9} {'false':>7}  missed")
    for name in EDITS:
        print(f"  {name:18} {found[name]:>4}/{len(pictures):<4} {false[name]:>7}  {', '.join(missed[name][:3])}")


if __name__ == "__main__":
    main()
