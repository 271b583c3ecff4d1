"""How long a big HTML report takes to open in Chromium: N synthetic groups, page only (no images).

Usage: python benchmarks/html_load.py [--groups 20000] [--members 3]

Writes a report of N groups of made-up files (paths, sizes, evidence like a real scan's) with
dedupe.report.html.write_html(images=False), opens it from file:// in headless Chromium (Debian's
package, through Playwright) and prints the time until the first page of groups is rendered, then the
time a path filter and a re-sort take. Measures; exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def synthetic(groups: int, members: int) -> dict:
    rows = []
    for g in range(1, groups + 1):
        ms = []
        for i in range(members):
            ms.append(
                {
                    "path": f"/photos/{2000 + g % 25}/{g % 12 + 1:02d} Event {g % 97}/IMG_{g:06d}"
                + ("" if i == 0 else f"_{i}")
                + ".jpg",
                    "root": "/photos",
                    "relation": "keeper" if i == 0 else "near",
                    "action": "keep" if i == 0 else "remove",
                    "size": 3_000_000 - 1000 * i,
                    "mtime_ns": 0,
                    "device": 1,
                    "inode": g * 10 + i,
                    "width": 4032,
                    "height": 3024,
                    "format": "JPEG",
                    "lossless": False,
                    "exif_date": "2019:07:14 10:11:12",
                    "camera": "Pixel 3",
                    "content_hash": f"{g:032x}",
                    "phash": f"{g:016x}",
                    "score": 100 - 3 * i,
                    "ssim": 1 - 0.03 * i,
                    "hash_distance": 2 * i,
                    "transform": {} if i == 0 else {"aligned": False},
                }
            )
        rows.append(
            {
                "id": g,
                "kind": "near",
                "keeper": ms[0]["path"],
                "keeper_reason": "largest file",
                "bytes_freed": sum(m["size"] for m in ms[1:]),
                "members": ms,
            }
        )
    return {
        "schema_version": 1,
        "tool": {"name": "dedupe", "version": "bench"},
        "started": "-",
        "finished": "-",
        "argv": [],
        "roots": ["/photos"],
        "settings": {},
        "stats": {"files_seen": groups * members, "timings": {"total": 0.0}},
        "summary": {
            "groups": groups,
            "exact_groups": 0,
            "near_groups": groups,
            "files_to_remove": groups * (members - 1),
            "bytes_freed": sum(r["bytes_freed"] for r in rows),
            "problems": 0,
        },
        "groups": rows,
        "problems": [],
        "similar": [],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=20_000)
    ap.add_argument("--members", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from dedupe.report.html import write_html

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("html_load: no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "big.html"
        started = time.perf_counter()
        write_html(synthetic(args.groups, args.members), page_path, images=False)
        written = time.perf_counter() - started
        size = page_path.stat().st_size
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            opened = time.perf_counter() - started
            shown = page.locator("section.group").count()
            started = time.perf_counter()
            page.fill("#filter", "event 42/")
            page.wait_for_function("document.getElementById('page-info').textContent.length > 0")
            filtered = time.perf_counter() - started
            started = time.perf_counter()
            page.select_option("#sort", "path")
            resorted = time.perf_counter() - started
            browser.close()
    print(f"{args.groups:,} groups of {args.members}: page {size / 1e6:.1f} MB written in {written:.1f} s")
    print(
        f"opened in Chromium from file:// in {opened:.2f} s ({shown} groups on the first page); "
        f"filter {filtered:.2f} s, re-sort {resorted:.2f} s"
    )
    print(f"{'PASS' if opened < 5 else 'FAIL'}  opens in under 5 s")


if __name__ == "__main__":
    main()
