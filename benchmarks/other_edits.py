"""A dev-like corpus with other edit parameters: the kit's generator, its `dev` profile's values changed.

Usage: python benchmarks/other_edits.py [DEST] [--seed N] [--dev-params] [--sources DIR] [--set KEY=JSON ...]

Accuracy is also judged on libraries made with other edit parameters than the dev corpus's (other JPEG
qualities, crop areas, brightness factors...). This builds one with ../shared/bench/build_corpus.py in the
kit's own venv (made by make_corpus.sh), its `dev` profile replaced by HARDER, then any --set on top, so the
per-kind recall can be read for each kind of edit at a strength the dev corpus does not have. --sources takes
other photographs (a folder of them), --dev-params keeps the dev profile's values. Score it with
run_bench.py --corpus DEST (default ~/.cache/dedupe-bench/harder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
CACHE = Path.home() / ".cache" / "dedupe-bench"

HARDER = dict(
    jpeg_q=[85, 55, 25],
    resize=[40, 15],
    resize_long=1280,
    thumb=240,
    crop=[92, 85, 75],
    webp_q=70,
    heic_q=60,
    bright=[1.4, 0.7],
    contrast=1.5,
    saturation=1.8,
    wm_text="(c) 2021 Jane Doe Photography - all rights reserved",
    wm_pos="bl",
    logo_pos="bl",
    border=(0, 0, 0),
    border_frac=0.07,
    blur_frac=0.0012,
    noise_sigma=10.0,
    msg_long=1280,
    msg_q=60,
    msg_crop=0.95,
    web_long=1600,
    web_q=70,
    web_crop=0.92,
)
"""Every edit stronger than the dev profile's, within what people do to photos (and within the 70% least
area a crop keeps that the scan's default min_crop_area accepts)."""
PLAN = ("n_variants", "p_single", "p_tiles", "p_burst", "burst_shift")
"""The dev profile's keys for how the library is laid out, which --set may change too: a burst_shift of
(0.12, 0.18) makes frames of one burst that share 80% of their picture, harder negatives than the kit's."""

_BUILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import build_corpus as kit
profile = json.loads(sys.argv[2])
if "border" in profile:
    profile["border"] = tuple(profile["border"])  # a fill colour, which JSON made a list
kit.PROFILES["dev"] = {**kit.PROFILES["dev"], **profile}
sys.argv = ["build_corpus.py", *sys.argv[3:]]
kit.main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", nargs="?", type=Path, default=CACHE / "harder", help="output folder (rebuilt)")
    ap.add_argument("--seed", type=int, default=11, help="the plan's seed (the dev corpus's is 1)")
    ap.add_argument("--dev-params", action="store_true", help="the dev profile's values, not HARDER")
    ap.add_argument("--sources", type=Path, help="a folder of source photographs (default: the kit's 29)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON", help="a profile value, e.g. crop=[90,80,70]"
    )
    args = ap.parse_args()
    profile = {} if args.dev_params else dict(HARDER)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in HARDER and key not in PLAN:
            sys.exit(f"other_edits: unknown profile key {key!r} (known: {', '.join([*HARDER, *PLAN])})")
        profile[key] = json.loads(value)
    python = CACHE / ".venv" / "bin" / "python"
    kit_sources = CACHE / "sources" / "manifest.json"
    if not python.exists() or not kit_sources.exists():
        subprocess.run(["bash", str(KIT / "make_corpus.sh"), str(CACHE), "dev"], check=True)  # the venv and the sources
    env = dict(os.environ)
    font = CACHE / "fonts" / "DejaVuSans-Bold.ttf"
    if font.exists():
        env.setdefault("BENCH_FONT", str(font))
    sources = args.sources.resolve() if args.sources else kit_sources
    args.dest.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), "-c", _BUILD, str(KIT), json.dumps(profile)]
    cmd += ["--sources", str(sources), "--out", str(args.dest), "--seed", str(args.seed), "--profile", "dev"]
    subprocess.run(cmd, check=True, env=env)
    print(f"corpus: {args.dest}/images  truth: {args.dest}/truth.json")


if __name__ == "__main__":
    main()
