"""The HTML report in a real browser: headless Chromium (Debian's package) driven by Playwright, from file://.

Skipped on a machine without Chromium, except in CI (CI=true), where a missing browser is a failure (the
`browser` fixture of conftest.py). tests/test_review.py drives the review in the same page.
"""

from __future__ import annotations

import pytest

from dedupe import Settings, report_dict, scan
from dedupe.report.html import write_html
from images import encode, photo, recompress, resize, watermark

EVIL = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    for n in range(3):
        pic = photo(400 + n, (480, 360))
        (root / f"trip_{n}.jpg").write_bytes(encode(pic, quality=92))
        (root / f"trip_{n}_small.jpg").write_bytes(encode(resize(recompress(pic, 70), 0.5)))
        (root / f"trip_{n}_marked.jpg").write_bytes(encode(watermark(pic)))
    evil = photo(410, (400, 300))
    (root / "holiday.jpg").write_bytes(encode(evil, quality=92))
    (root / EVIL).write_bytes(encode(recompress(evil, 60)))
    (root / "single.jpg").write_bytes(encode(photo(420, (400, 300))))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = scan([root], Settings(workers=1))
    assert len(result.groups) == 4
    out = tmp_path_factory.mktemp("out") / "report.html"
    write_html(report_dict(result), out, workers=1)
    return out


def test_report_in_chromium(browser, page_file, tmp_path):
    # the CSP is bypassed so that escaping alone must keep the malicious name inert
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready='1']")

    # every group is there, each with exactly one keeper badge
    assert page.locator("section.group").count() == 4
    assert page.locator("#total-groups").inner_text() == "4"
    for card in page.locator("section.group").all():
        assert card.locator(".badge.keep").count() == 1
        assert card.locator(".badge.remove").count() == card.locator(".member").count() - 1
    # thumbnails load from the sibling folder, over file://
    page.wait_for_function("[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)")

    # filtering by path
    page.fill("#filter", "trip_1")
    assert page.locator("section.group").count() == 1
    assert "trip_1" in page.locator("section.group").inner_text()
    page.fill("#filter", "")
    assert page.locator("section.group").count() == 4

    # the malicious name is text, and nothing ran
    page.fill("#filter", "onerror")
    assert page.locator("section.group").count() == 1
    assert any(t.endswith("/" + EVIL) for t in page.locator("section.group .path").all_inner_texts())
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == [] and errors == []

    # the problem is listed with its reason
    assert "broken.jpg" in page.locator("#problems").inner_text()
    page.fill("#filter", "")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
