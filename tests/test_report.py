"""The JSON report: valid against schema.json, written atomically, read back with version checks."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest

from dedupe import __version__, scan
from dedupe.report.jsonreport import SCHEMA_VERSION, ReportError, read_report, report_dict, schema, write_report
from images import border, encode, photo, recompress, resize


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from dedupe.config import Settings

    root = tmp_path_factory.mktemp("reportlib")
    pic = photo(31, (400, 300))
    (root / "orig.png").write_bytes(encode(pic, "PNG"))
    (root / "small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "framed.jpg").write_bytes(encode(border(recompress(pic, 60), 0.03)))
    (root / "copy.png").write_bytes((root / "orig.png").read_bytes())
    other = encode(photo(32, (300, 300)))
    (root / "other.jpg").write_bytes(other)
    (root / "other_copy.jpg").write_bytes(other)
    (root / "single.jpg").write_bytes(encode(photo(33, (300, 200))))
    (root / "broken.jpg").write_bytes(other[:100])
    (root / "notes.txt").write_text("hello")
    (root / "empty.png").write_bytes(b"")
    (root / "misnamed.jpg").write_bytes(encode(photo(34, (200, 300)), "PNG"))
    os.link(root / "single.jpg", root / "single_hardlink.jpg")
    return scan([root], Settings(workers=1))


@pytest.fixture(scope="module")
def validator():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_result_has_what_the_report_needs(result):
    kinds = sorted(g.kind for g in result.groups)
    assert kinds == ["exact", "near"]
    assert {p.kind for p in result.problems} >= {"error", "skipped"}


def test_report_validates_against_schema(result, validator):
    data = report_dict(result, argv=["dedupe", "scan", "x"])
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["tool"] == {"name": "dedupe", "version": __version__}
    assert data["argv"] == ["dedupe", "scan", "x"]


def test_report_content(result):
    data = report_dict(result)
    s = data["summary"]
    assert s["groups"] == len(data["groups"]) == 2
    assert s["exact_groups"] == 1 and s["near_groups"] == 1
    assert s["files_to_remove"] == sum(len(g["members"]) - 1 for g in data["groups"])
    assert s["bytes_freed"] == sum(g["bytes_freed"] for g in data["groups"])
    assert s["problems"] == len(data["problems"])
    assert [g["id"] for g in data["groups"]] == [1, 2]
    for g in data["groups"]:
        keep = [m for m in g["members"] if m["action"] == "keep"]
        assert len(keep) == 1 and keep[0]["path"] == g["keeper"] and keep[0]["relation"] == "keeper"
        assert all(m["action"] == "remove" for m in g["members"] if m["relation"] != "keeper")
        assert g["bytes_freed"] == sum(m["size"] for m in g["members"] if m["action"] == "remove")
    near = next(g for g in data["groups"] if g["kind"] == "near")
    framed = next(m for m in near["members"] if m["path"].endswith("framed.jpg"))
    assert isinstance(framed["transform"].get("aligned"), bool)
    assert 0 <= framed["hash_distance"] <= 64 and framed["score"] >= 70
    assert set(data["settings"]) >= {"hash_radius", "ssim_threshold", "keeper_rules", "workers"}
    json.dumps(data)  # plain data only


def test_validator_rejects_a_broken_report(result, validator):
    data = report_dict(result)
    data["groups"][0]["members"][0]["phash"] = "xyz"
    assert not validator.is_valid(data)
    data = report_dict(result)
    del data["summary"]
    assert not validator.is_valid(data)


def test_write_and_read_round_trip(result, tmp_path, validator):
    path = tmp_path / "report.json"
    write_report(result, path, argv=["dedupe"])
    assert os.listdir(tmp_path) == ["report.json"]  # no temp file left behind
    back = read_report(path)
    assert back == json.loads(json.dumps(report_dict(result, ["dedupe"])))
    assert validator.is_valid(back)
    write_report(result, path)  # overwrites
    assert read_report(path)["argv"] == []


def test_a_report_is_written_readable_as_any_file_and_keeps_the_mode_of_the_one_it_replaces(result, tmp_path):
    """mkstemp's 0600 hid a rescanned shared report from the other accounts reading it."""
    path = tmp_path / "report.json"
    mask = os.umask(0o022)
    try:
        write_report(result, path)
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o664)
        write_report(result, path)
        assert path.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(mask)


def test_write_report_into_missing_folder_fails_cleanly(result, tmp_path):
    with pytest.raises(OSError):
        write_report(result, tmp_path / "nope" / "report.json")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(
    "content",
    [
        '{"hello": "world"}',
        "[1, 2, 3]",
        '{"groups": []}',
        '"just a string"',
    ],
)
def test_read_report_refuses_non_reports(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ReportError, match="not a dedupe report"):
        read_report(path)


def test_read_report_refuses_newer_schema(result, tmp_path):
    data = report_dict(result)
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="schema version"):
        read_report(path)


def test_read_report_refuses_bad_version_type(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"schema_version": "1", "groups": []}))
    with pytest.raises(ReportError):
        read_report(path)


def test_read_report_missing_and_invalid_json(tmp_path):
    with pytest.raises(ReportError, match="not found"):
        read_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="cannot read"):
        read_report(bad)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ReportError):
        read_report(binary)


def test_report_error_is_one_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ReportError) as err:
        read_report(path)
    assert "\n" not in str(err.value)


def test_odd_file_names_round_trip(tmp_path):
    """Names that are not valid UTF-8, or hold markup or a newline, are written as valid JSON and read
    back as the same paths."""
    from dedupe.config import Settings

    data = encode(photo(34, (200, 150)))
    odd = [
        os.fsdecode(b"\xff\xfename.jpg"),  # not UTF-8: lone surrogates in Python
        "copy <img src=x onerror=alert(1)>.jpg",
        "new\nline.jpg",
    ]
    for name in odd:
        (tmp_path / name).write_bytes(data)
    report = tmp_path / "r.json"
    write_report(scan([tmp_path], Settings(workers=1)), report)
    json.loads(report.read_bytes().decode("utf-8"))  # strict UTF-8 and valid JSON
    back = read_report(report)
    paths = sorted(m["path"] for g in back["groups"] for m in g["members"])
    assert paths == sorted(str(tmp_path / n) for n in odd)
    assert all(os.path.exists(p) for p in paths)
