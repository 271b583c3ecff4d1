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
