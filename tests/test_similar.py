"""Similar shots: burst frames are listed apart when asked for, and never grouped as duplicates."""

from __future__ import annotations

import jsonschema

from dedupe import Settings, report_dict, scan
from dedupe.report.jsonreport import schema
from images import encode, photo


def _burst(tmp_path, shift: float = 0.3):
    big = photo(77, (1000, 500))
    w = 600
    step = int(shift * w)
    for n, x in enumerate((0, step)):
        (tmp_path / f"frame{n}.jpg").write_bytes(encode(big.crop((x, 0, x + w, 450)), quality=92))
    return tmp_path


def test_burst_frames_are_similar_shots_not_duplicates(tmp_path):
    result = scan([_burst(tmp_path)], Settings(workers=1, similar=True))
    assert result.groups == []
    assert len(result.similar) == 1
    pair = result.similar[0]
    assert {pair.a.rsplit("/", 1)[1], pair.b.rsplit("/", 1)[1]} == {"frame0.jpg", "frame1.jpg"}
    assert 0.6 <= pair.overlap <= 0.8  # frames 600 px wide, 180 px apart: 70% in common
    assert pair.inliers >= 12
    report = report_dict(result)
    jsonschema.validate(report, schema())
    assert report["similar"][0]["overlap"] == pair.overlap


def test_similar_shots_are_only_listed_when_asked_for(tmp_path):
    result = scan([_burst(tmp_path)], Settings(workers=1))
    assert result.groups == [] and result.similar == []


def test_overlaps_are_checked_only_for_similar_shots_and_remembered_apart(tmp_path):
    from dedupe.match import geometry, verdict_key
    from dedupe.read import analyse

    photos = tmp_path / "photos"
    photos.mkdir()
    _burst(photos)
    x, y = (analyse(str(photos / f"frame{n}.jpg"), Settings().max_pixels) for n in (0, 1))
    shots = geometry(x, y, Settings(similar=True))
    assert shots is not None and shots["transform"]["similar"]
    assert geometry(x, y, Settings()) is None  # the overlap is not worth its SSIM when it is not listed
    assert verdict_key("geometry", (), Settings()) != verdict_key("geometry", (), Settings(similar=True))
    assert verdict_key("confirm", (0,), Settings()) == verdict_key("confirm", (0,), Settings(similar=True))

    cache = tmp_path / "c.sqlite"  # a scan without similar shots, then one with: the second finds them
    assert scan([photos], Settings(workers=1), cache=cache).similar == []
    assert len(scan([photos], Settings(workers=1, similar=True), cache=cache).similar) == 1
