"""The HTML report's page and files, without a browser (tests/test_browser.py opens it in Chromium)."""

from __future__ import annotations

import json
import re

import pytest

from dedupe import Settings, report_dict, scan
from dedupe.cli import app
from dedupe.report.html import assets_dir, write_html
from images import encode, photo, recompress, resize, watermark

EVIL = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    pic = photo(300, (480, 360))
    (root / "orig.jpg").write_bytes(encode(pic, quality=92))
    (root / "copy.jpg").write_bytes((root / "orig.jpg").read_bytes())
    (root / "small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / EVIL).write_bytes(encode(watermark(recompress(pic, 70))))
    (root / "other.jpg").write_bytes(encode(photo(301, (480, 360))))
    (root / "notes <b>bold.txt").write_text("not a picture")
    return report_dict(scan([root], Settings(workers=1)))


def test_page_and_images(scanned, tmp_path):
    out = tmp_path / "r.html"
    folder = write_html(scanned, out, workers=1)
    assert folder == assets_dir(out) == tmp_path / "r_files"
    page = out.read_text("utf-8")
    g = scanned["groups"][0]
    # a thumbnail per member, a difference view per near member
    assert sorted(p.name for p in folder.glob("t*.jpg")) == sorted(
        f"t{g['id']}_{i}.jpg" for i in range(len(g["members"]))
    )
    near = [i for i, m in enumerate(g["members"]) if m["relation"] == "near"]
    assert near and sorted(p.name for p in folder.glob("d*.png")) == sorted(f"d{g['id']}_{i}.png" for i in near)
    # nothing is fetched from elsewhere
    assert not re.search(r"(src|href)=[\"']?https?:", page)


def test_names_are_never_markup(scanned, tmp_path):
    out = tmp_path / "r.html"
    write_html(scanned, out, workers=1)
    page = out.read_text("utf-8")
    assert "<img src=x" not in page and "<b>bold" not in page
    assert "notes &lt;b&gt;bold.txt" in page  # the problem row, escaped by the template
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)[1])
    paths = [m["path"] for g in data["groups"] for m in g["members"]]
    assert any(p.endswith(EVIL) for p in paths)  # the data keeps the name exactly
    markup = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", markup)  # no inline event handler anywhere


def test_report_command_renders_a_saved_report(scanned, tmp_path):
    from typer.testing import CliRunner

    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(scanned))
    out = tmp_path / "again.html"
    res = CliRunner().invoke(app, ["report", str(saved), "--html", str(out), "--workers", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and assets_dir(out).is_dir()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing.json"), "--html", str(out)])
    assert res.exit_code == 2


def test_scan_writes_html(tmp_path):
    from typer.testing import CliRunner

    root = tmp_path / "lib"
    root.mkdir()
    pic = photo(302, (320, 240))
    (root / "a.jpg").write_bytes(encode(pic))
    (root / "b.png").write_bytes(encode(pic, "PNG"))
    out = tmp_path / "scan.html"
    res = CliRunner().invoke(app, ["scan", str(root), "--html", str(out), "--workers", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert "HTML report:" in res.output
    assert "a.jpg" in out.read_text("utf-8")


def test_a_rescan_skips_the_reports_images(scanned, tmp_path):
    """A report written inside the photo folder must not make its thumbnails look like more copies."""
    root = tmp_path / "photos"
    root.mkdir()
    pic = photo(303, (480, 360))
    (root / "a.jpg").write_bytes(encode(pic, quality=92))
    (root / "b.jpg").write_bytes(encode(resize(pic, 0.5)))
    first = scan([root], Settings(workers=1))
    write_html(report_dict(first), root / "report.html", workers=1)
    assert any(assets_dir(root / "report.html").glob("t*.jpg"))
    again = scan([root], Settings(workers=1))
    assert [len(g.members) for g in again.groups] == [2]
    assert any("dedupe HTML report" in p.reason for p in again.problems)
