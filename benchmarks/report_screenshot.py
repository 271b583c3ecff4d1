"""Screenshot of the HTML report of a folder, as a person would see it in Chromium.

Usage: python benchmarks/report_screenshot.py FOLDER OUT.png [--html REPORT.html] [--width 1400]
                                              [--keys "j l x j n"] [--viewport]

Scans FOLDER (default settings), writes the HTML report (REPORT.html, default beside OUT.png), opens it
from file:// in headless Chromium (Debian's package, through Playwright), waits until every thumbnail
and difference view of the first page has loaded, and saves a full-page screenshot. It prints how many
groups, thumbnails and difference views the page shows, and how many images failed to load.

The page is also the review: --keys presses keys (Playwright key names, space-separated) before the
screenshot, e.g. "j l x j n" (first group, its second file kept, next group not duplicates) or "j ?"
(the keys' help); --viewport shoots the window at the focused group instead of the whole page.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--html", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--keys", default="", help="keys to press before the screenshot, space-separated")
    ap.add_argument("--viewport", action="store_true", help="the window only, not the full page")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    import dedupe
    from dedupe.report.html import write_html

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("report_screenshot: no chromium on PATH (apt-get install chromium)")
    html = args.html or args.out.with_suffix(".html")
    result = dedupe.scan([args.folder])
    write_html(dedupe.report_dict(result), html)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": args.width, "height": 1000}, bypass_csp=True)
        page.goto(html.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.evaluate("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
        page.wait_for_function("[...document.images].every(i => i.complete)", timeout=60_000)
        counts = page.evaluate(
            """() => ({groups: document.querySelectorAll('section.group').length,
                       thumbs: document.querySelectorAll('img.thumb').length,
                       diffs: document.querySelectorAll('figure.diff img').length,
                       broken: [...document.images].filter(i => i.naturalWidth === 0).length})"""
        )
        for key in args.keys.split():
            page.keyboard.press(key)
        page.screenshot(path=str(args.out), full_page=not args.viewport)
        totals = page.evaluate(
            "['remove', 'bytes', 'decided'].map(k => document.getElementById('total-' + k).textContent)"
        )
        browser.close()
    print(
        f"{html}: {len(result.groups)} groups in all; first page shows {counts['groups']} groups, "
        f"{counts['thumbs']} thumbnails, {counts['diffs']} difference views, {counts['broken']} images not loaded"
    )
    if args.keys:
        print(f"after {args.keys!r}: {totals[0]} files to remove, {totals[1]} to free, {totals[2]} groups decided")
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
