"""The `dedupe` command: in-process with typer's CliRunner, and as `python -m dedupe` for real exit codes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from PIL import Image
from typer.testing import CliRunner

import dedupe
import dedupe.cli
from dedupe.cli import app
from dedupe.report.jsonreport import read_report, schema
from images import encode, photo, recompress, resize

HAVE_DEMO = (Path(dedupe.__file__).parent / "demo.py").exists()


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clilib")
    pic = photo(41, (400, 300))
    (root / "a.jpg").write_bytes(encode(pic))
    (root / "a_copy.jpg").write_bytes(encode(pic))
    (root / "a_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "a_q50.jpg").write_bytes(encode(recompress(pic, 50), quality=50))
    (root / "b.jpg").write_bytes(encode(photo(42, (400, 300))))
    (root / "broken.jpg").write_bytes(encode(photo(43, (200, 150)))[:150])
    (root / "readme.txt").write_text("not a photo")
    return root


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def python_m(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dedupe", *args], capture_output=True, text=True, env=env, timeout=120)


def stderr_of(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):  # older click: stderr mixed into output
        return result.output


# --------------------------------------------------------------------------- in-process


def test_scan_prints_summary(lib):
    result = run("scan", str(lib), "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Duplicate groups: 1 (0 exact, 1 near)" in out
    assert "Problems: 1 unreadable or broken files, 1 skipped" in out
    assert "Files seen: 7" in out
    assert "Files that could go: 3" in out


def test_scan_writes_json_report(lib, tmp_path):
    out = tmp_path / "report.json"
    result = run("scan", str(lib), "--workers", "1", "-q", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert f"Report: {out}" in result.stdout
    data = read_report(out)
    jsonschema.validate(data, schema())
    assert data["summary"]["groups"] == 1
    assert {Path(m["path"]).name for m in data["groups"][0]["members"]} == {
        "a.jpg",
        "a_copy.jpg",
        "a_small.jpg",
        "a_q50.jpg",
    }
    assert data["settings"]["workers"] == 1


def test_scan_flags_reach_the_settings(lib, tmp_path):
    out = tmp_path / "r.json"
    result = run(
        "scan",
        str(lib),
        "-q",
        "--workers",
        "1",
        "--json",
        str(out),
        "--hash-radius",
        "6",
        "--ssim-threshold",
        "0.9",
        "--keeper-rules",
        "path, pixels",
        "--exclude",
        "*_q50.jpg",
        "--include",
        "*.jpg",
        "--hidden",
        "--max-pixels",
        "1000000",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    s = data["settings"]
    assert (s["hash_radius"], s["ssim_threshold"], s["keeper_rules"]) == (6, 0.9, ["path", "pixels"])
    assert (s["exclude"], s["include"], s["hidden"], s["max_pixels"]) == (["*_q50.jpg"], ["*.jpg"], True, 1_000_000)
    members = {Path(m["path"]).name for g in data["groups"] for m in g["members"]}
    assert "a_q50.jpg" not in members
    assert "readme.txt" not in {Path(p["path"]).name for p in data["problems"]}  # not included


def test_config_file_and_flag_precedence(lib, tmp_path, no_user_config):
    no_user_config.parent.mkdir(parents=True, exist_ok=True)
    no_user_config.write_text("hash_radius = 3\nssim_threshold = 0.8\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("hash_radius = 5\nworkers = 1\n")
    out = tmp_path / "r.json"
    result = run("scan", str(lib), "-q", "--config", str(cfg), "--hash-radius", "7", "--json", str(out))
    assert result.exit_code == 0, result.output
    s = json.loads(out.read_text())["settings"]
    assert (s["hash_radius"], s["ssim_threshold"], s["workers"]) == (7, 0.8, 1)


def test_missing_folder_exit_2_one_line(tmp_path):
    result = run("scan", str(tmp_path / "nope"))
    assert result.exit_code == 2
    err = stderr_of(result).strip()
    assert err.count("\n") == 0 and "no such file or folder" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args,match",
    [
        (["--hash-radius", "99"], "hash_radius"),
        (["--ssim-threshold", "0"], "ssim_threshold"),
        (["--keeper-rules", "pixels,beauty"], "beauty"),
        (["--workers", "-1"], "workers"),
    ],
)
def test_bad_flag_value_exit_2(lib, args, match):
    result = run("scan", str(lib), "-q", *args)
    assert result.exit_code == 2
    err = stderr_of(result).strip()
    assert match in err and err.count("\n") == 0


def test_bad_config_file_exit_2(lib, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('hash_radius = "wide"\n')
    result = run("scan", str(lib), "--config", str(cfg))
    assert result.exit_code == 2
    assert "hash_radius" in stderr_of(result)
    cfg.write_text("colour = 1\n")
    result = run("scan", str(lib), "--config", str(cfg))
    assert result.exit_code == 2 and "unknown setting" in stderr_of(result)
    result = run("scan", str(lib), "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2 and "not found" in stderr_of(result)


def test_json_into_missing_folder_exit_2(lib, tmp_path):
    result = run("scan", str(lib), "--json", str(tmp_path / "no" / "r.json"))
    assert result.exit_code == 2
    assert "does not exist" in stderr_of(result)


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dedupe {dedupe.__version__}"


def test_unknown_option_is_a_usage_error(lib):
    result = run("scan", str(lib), "--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.output or "No such option" in stderr_of(result)


# --------------------------------------------------------------------------- main(): exit codes of the real command


def call_main(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dedupe", *args])
    from dedupe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main()
        raise SystemExit(0)  # main() returned normally: exit status 0
    return exit_info.value.code or 0


def test_main_cancelled_exit_130(monkeypatch, lib, capsys):
    def cancelled(*a, **k):
        raise dedupe.Cancelled()

    monkeypatch.setattr("dedupe.pipeline.scan", cancelled)
    assert call_main(monkeypatch, "scan", str(lib), "-q") == 130
    assert "interrupted" in capsys.readouterr().err


def test_main_unexpected_error_exit_1(monkeypatch, lib, capsys):
    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("dedupe.pipeline.scan", broken)
    assert call_main(monkeypatch, "scan", str(lib), "-q") == 1
    err = capsys.readouterr().err
    assert "unexpected error" in err and "disk on fire" in err


def test_main_ctrl_c_exit_130(monkeypatch, lib, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("dedupe.pipeline.scan", interrupted)
    assert call_main(monkeypatch, "scan", str(lib), "-q") == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="a process signals itself the POSIX way")
@pytest.mark.parametrize("number", dedupe.cli.STOP_SIGNALS[1:])
def test_a_scan_stopped_by_a_signal_cleans_up_like_ctrl_c(monkeypatch, lib, tmp_path, capsys, number):
    """`kill`, `timeout` or a closed terminal: the private cache of --no-cache is removed, the exit code
    tells which signal, and the process's own handlers are back afterwards."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    real = dedupe.cli.TqdmProgress.advance
    seen = []

    def advance(self, n=1):  # the signal arrives in the middle of the scan, once its cache exists
        seen.extend(p.name for p in tmp_path.glob("dedupe-cache-*"))
        os.kill(os.getpid(), number)
        real(self, n)

    def unhandled(*_):  # what the signal does if main() leaves it to us (the default would end pytest)
        raise RuntimeError("signal not handled by dedupe")

    monkeypatch.setattr(dedupe.cli.TqdmProgress, "advance", advance)
    before = signal.signal(number, unhandled)
    try:
        code = call_main(monkeypatch, "scan", str(lib), "--no-cache", "--workers", "1", "-q")
        after = signal.getsignal(number)
    finally:
        signal.signal(number, before)
    assert code == 128 + number
    assert "interrupted" in capsys.readouterr().err
    assert seen and not list(tmp_path.glob("dedupe-cache-*"))
    assert after is unhandled


def test_main_missing_folder_exit_2(monkeypatch, tmp_path):
    assert call_main(monkeypatch, "scan", str(tmp_path / "nope")) == 2


# --------------------------------------------------------------------------- python -m dedupe


def test_subprocess_version(cli_env):
    proc = python_m(cli_env, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"dedupe {dedupe.__version__}"


def test_subprocess_scan_with_json(lib, tmp_path, cli_env):
    out = tmp_path / "r.json"
    proc = python_m(cli_env, "scan", str(lib), "--workers", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Duplicate groups: 1" in proc.stdout and "Problems:" in proc.stdout
    jsonschema.validate(read_report(out), schema())
    assert "Traceback" not in proc.stderr


def test_subprocess_missing_folder_exit_2_one_line(tmp_path, cli_env):
    proc = python_m(cli_env, "scan", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dedupe: no such file or folder: {tmp_path / 'nope'}"
    assert proc.stdout == ""


def test_subprocess_bad_config_value_exit_2(lib, tmp_path, cli_env):
    proc = python_m(cli_env, "scan", str(lib), "--hash-radius", "99")
    assert "hash_radius" in proc.stderr
    assert proc.returncode == 2
    cfg = tmp_path / "bad.toml"
    cfg.write_text("ssim_threshold = 7\n")
    proc = python_m(cli_env, "scan", str(lib), "--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dedupe: ") and "ssim_threshold" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_subprocess_unknown_option_exit_2(lib, cli_env):
    proc = python_m(cli_env, "scan", "--bogus", str(lib))
    assert "unexpected error" not in proc.stderr
    assert "No such option" in proc.stderr
    assert proc.returncode == 2


def test_subprocess_no_arguments_shows_usage(cli_env):
    proc = python_m(cli_env)
    assert "Usage" in proc.stdout + proc.stderr
    assert "unexpected error" not in proc.stderr
    assert proc.returncode in (0, 2)


def imported(env: dict, *args: str) -> set[str]:
    """The modules that `python -m dedupe ARGS` imported, from its -X importtime report."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dedupe", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("cache", "--help"), ("compare", "--help")])
def test_help_imports_no_image_library(cli_env, args):
    assert imported(cli_env, *args) & {"numpy", "cv2", "faiss"} == set()


def test_commands_import_only_what_they_use(lib, tmp_path, cli_env):
    """Start-up is most of a short command's time: numpy, OpenCV and FAISS are imported by the commands
    that use them (the cache module uses numpy throughout), and only those."""
    report = tmp_path / "r.json"
    assert run("scan", str(lib), "--workers", "1", "-q", "--json", str(report)).exit_code == 0
    for args in [("cache", "info", "--cache", str(tmp_path / "c.sqlite")), ("cache", "clear")]:
        assert imported(cli_env, *args) & {"cv2", "faiss"} == set(), args
    for args in [
        ("plan", str(report), "-o", str(tmp_path / "plan.json")),
        ("apply", str(report)),
        ("undo", str(tmp_path / "no-journal.json")),
    ]:
        assert imported(cli_env, *args) & {"numpy", "cv2", "faiss"} == set(), args
    compared = imported(cli_env, "compare", str(lib / "a.jpg"), str(lib / "a_small.jpg"))
    assert "cv2" in compared and "faiss" not in compared


def test_public_names_resolve_on_first_use(cli_env):
    """dedupe.compare and dedupe.search stay the functions even when their submodules load first."""
    code = (
        "import dedupe.cli, dedupe.search\n"
        "from dedupe import Settings, compare, search\n"
        "import dedupe\n"
        "assert (compare.__module__, search.__module__) == ('dedupe.compare', 'dedupe.search'), (compare, search)\n"
        "assert dedupe.compare is compare and dedupe.search is search and Settings.__name__ == 'Settings'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- demo


needs_demo = pytest.mark.skipif(not HAVE_DEMO, reason="dedupe/demo.py not present (yet)")


@needs_demo
def test_demo_writes_library_and_finds_planted_groups(tmp_path, no_user_config, monkeypatch):
    import dedupe.demo

    planted = {}
    real = dedupe.demo.make_library

    def recording(folder, *args, **kwargs):
        planted.update(real(folder, *args, **kwargs))
        return planted

    monkeypatch.setattr(dedupe.demo, "make_library", recording)
    no_user_config.parent.mkdir(parents=True, exist_ok=True)
    no_user_config.write_text("workers = 1\n")  # no process pool in the suite
    folder = tmp_path / "demo"
    result = run("demo", str(folder), "-q")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"Wrote {planted['files']} files")
    assert f"Duplicate groups: {len(planted['groups'])} " in out and "Problems:" in out
    assert "Group 1" in out and "keep" in out and "remove" in out
    # every planted copy is found, nothing else is grouped, and the junk is reported
    got = dedupe.scan([folder], dedupe.Settings(workers=1))
    found = sorted(sorted(os.path.relpath(m.file.path, folder) for m in g.members) for g in got.groups)
    assert found == sorted(sorted(g) for g in planted["groups"])
    reported = {os.path.relpath(p.path, folder) for p in got.problems}
    assert set(planted["junk"]) <= reported


@needs_demo
def test_demo_refuses_non_empty_folder(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    result = run("demo", str(tmp_path))
    assert result.exit_code == 2
    assert "not empty" in stderr_of(result)
    assert os.listdir(tmp_path) == ["something.txt"]


# --------------------------------------------------------------------------- outputs never replace pictures


@pytest.fixture
def photos(tmp_path) -> Path:
    pic = photo(44, (320, 240))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "p.jpg").write_bytes(encode(pic))
    (tmp_path / "lib" / "p_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    return tmp_path


def unchanged(path: Path, before: bytes) -> bool:
    return path.read_bytes() == before


def test_no_report_or_plan_is_written_over_a_picture_or_its_own_input(photos):
    lib, photo_file = photos / "lib", photos / "lib" / "p.jpg"
    before = photo_file.read_bytes()
    for args in (
        ("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(photo_file)),
        ("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--html", str(photo_file)),
    ):
        result = run(*args)
        assert result.exit_code == 2 and "is not an earlier dedupe" in stderr_of(result), result.output
        assert unchanged(photo_file, before)
    report = photos / "r.json"
    both = run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(report), "--html", str(report))
    assert both.exit_code == 2 and "same file" in stderr_of(both) and not report.exists()
    assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(report)).exit_code == 0
    again = run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(report))
    assert again.exit_code == 0, "a report is written over an earlier report"
    saved = report.read_bytes()
    for args in (("report", str(report), "--html", str(report)), ("plan", str(report), "-o", str(report))):
        result = run(*args)
        assert result.exit_code == 2 and "also what this command reads" in stderr_of(result), result.output
        assert unchanged(report, saved)
    assert run("report", str(report), "--html", str(photo_file)).exit_code == 2
    assert run("plan", str(report), "-o", str(photo_file)).exit_code == 2 and unchanged(photo_file, before)


def test_difference_picture_replaces_only_an_earlier_one(photos):
    a, b = photos / "lib" / "p.jpg", photos / "lib" / "p_small.jpg"
    before = a.read_bytes()
    own = run("compare", str(a), str(b), "--diff", str(a))
    assert own.exit_code == 2 and "also what this command reads" in stderr_of(own) and unchanged(a, before)
    other_png = photos / "holiday.png"
    photo(45, (64, 48)).save(other_png)
    png_before = other_png.read_bytes()
    refused = run("compare", str(a), str(b), "--diff", str(other_png))
    assert refused.exit_code == 2 and "not an earlier dedupe difference" in stderr_of(refused)
    assert unchanged(other_png, png_before)
    diff = photos / "diff.png"
    assert run("compare", str(a), str(b), "--diff", str(diff)).exit_code == 0
    assert run("compare", str(a), str(b), "--diff", str(diff)).exit_code == 0, "its own earlier picture is replaced"
    assert Image.open(diff).format == "PNG"


def test_a_photo_given_as_cache_stops_every_command_before_it_acts(photos):
    """apply moved every file, then found its --cache was a photo when it came to remember decisions."""
    lib, photo_file = photos / "lib", photos / "lib" / "p.jpg"
    report = photos / "r.json"
    assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(report)).exit_code == 0
    listing = sorted(p.name for p in lib.iterdir())
    before = photo_file.read_bytes()
    for args in (
        ("apply", str(report), "--move-to", str(photos / "q")),
        ("scan", str(lib), "-q", "--workers", "1"),
        ("cache", "info"),
        ("cache", "clear"),
    ):
        result = run(*args, "--cache", str(photo_file))
        assert result.exit_code == 2 and "is not a dedupe cache" in stderr_of(result), (args, result.output)
        assert unchanged(photo_file, before) and sorted(p.name for p in lib.iterdir()) == listing
    assert not (photos / "q").exists()
    assert run("cache", "info", "--cache", str(lib)).exit_code == 2


def test_a_file_name_with_a_newline_stays_on_one_line_and_delete_offers_no_undo(photos):
    lib = photos / "lib"
    (lib / "p\nwould remove everything.jpg").write_bytes((lib / "p.jpg").read_bytes())
    report = photos / "r.json"
    assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(report)).exit_code == 0
    dry = run("apply", str(report), "--cache", str(photos / "c.sqlite"))
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert not any(line.startswith("would remove everything") for line in lines)
    assert any("p\\x0awould remove everything.jpg" in line for line in lines)
    (lib / "p\nwould remove everything.jpg").touch()  # changed since the scan: its group is skipped, said so
    skipped = run("apply", str(report), "--cache", str(photos / "c.sqlite")).stdout.splitlines()
    assert any(line.startswith("skip group") and "p\\x0awould remove everything.jpg" in line for line in skipped)
    assert not any(line.startswith("would remove everything") for line in skipped)
    plan = run("plan", str(report), "-o", str(photos / "p.json"), "--only", "near")
    assert plan.exit_code == 0 and "in 1 groups" in plan.stdout, plan.stdout  # the exact group has none to remove
    gone = run("apply", str(report), "--delete", "--yes", "--cache", str(photos / "c.sqlite"))
    assert gone.exit_code == 0 and "cannot be brought back" in gone.stdout and "undo with" not in gone.stdout


def test_outputs_spare_raw_files_the_cache_the_settings_and_a_folder_named_like_the_pages(photos):
    """No list of picture formats knows every camera's raw files; --json over its own --cache or
    --config replaced them; the page's folder of images replaced a folder of photos of that name."""
    lib = photos / "lib"
    raw = lib / "IMG_0001.CR3"
    raw.write_bytes(b"\x00\x00\x00\x18ftypcrx " + bytes(200))
    cache, config = photos / "mine.sqlite", photos / "settings.toml"
    config.write_text("workers = 1\n")
    assert run("scan", str(lib), "-q", "--workers", "1", "--cache", str(cache)).exit_code == 0
    saved = {p: p.read_bytes() for p in (raw, cache, config)}
    for out in (raw, cache, config):
        result = run("scan", str(lib), "-q", "--cache", str(cache), "--config", str(config), "--json", str(out))
        assert result.exit_code == 2, (out, result.output)
    assert all(p.read_bytes() == before for p, before in saved.items())
    album = photos / "album_files"
    album.mkdir()
    (album / "holiday.jpg").write_bytes((lib / "p.jpg").read_bytes())
    for args in (("scan", str(lib), "--no-cache", "-q", "--workers", "1"), ("report", str(photos / "r.json"))):
        if args[0] == "report":
            assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", args[1]).exit_code == 0
        result = run(*args, "--html", str(photos / "album.html"))
        assert result.exit_code == 2 and "not the folder of an earlier dedupe report" in stderr_of(result), args
        assert (album / "holiday.jpg").exists() and not (photos / "album.html").exists()
    (photos / "latest.json").symlink_to(photos / "r.json")  # a link to an earlier report is written through
    assert (
        run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(photos / "latest.json")).exit_code
        == 0
    )
    assert (photos / "latest.json").is_symlink() and read_report(photos / "r.json")["groups"]
    page = photos / "page.html"
    for _ in range(2):  # an earlier page and its folder are replaced
        assert run("report", str(photos / "r.json"), "--html", str(page), "-q").exit_code == 0
    assert (photos / "page_files" / ".dedupe-report-files").exists()


def test_each_output_replaces_only_its_own_kind_and_never_through_a_dangling_link(photos):
    lib, report, page = photos / "lib", photos / "r.json", photos / "page.html"
    scan_to = ("scan", str(lib), "--no-cache", "-q", "--workers", "1")
    assert run(*scan_to, "--json", str(report), "--html", str(page)).exit_code == 0
    other = photos / "other.json"
    other.write_text('{"schema_version": 3, "name": "another program"}')
    saved = {p: p.read_bytes() for p in (report, page, other)}
    for args in (("--json", str(page)), ("--html", str(report)), ("--json", str(other))):
        result = run(*scan_to, *args)
        assert result.exit_code == 2 and "is not an earlier dedupe" in stderr_of(result), args
    assert run("report", str(report), "--html", str(other)).exit_code == 2
    assert all(p.read_bytes() == before for p, before in saved.items())
    (photos / "nowhere.json").symlink_to(photos / "missing" / "x.json")
    result = run("plan", str(report), "-o", str(photos / "nowhere.json"))
    assert result.exit_code == 2 and "symbolic link to nothing" in stderr_of(result)


def test_a_page_never_replaces_its_folder_when_it_holds_anything_a_report_did_not_write(photos):
    """An earlier report's _files folder is replaced whole: a report, the cache or a photo put in it, or a
    scan root inside it, went with it."""
    lib, page = photos / "lib", photos / "ok.html"
    assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--html", str(page)).exit_code == 0
    folder = photos / "ok_files"
    kept = folder / "holiday.jpg"
    kept.write_bytes((lib / "p.jpg").read_bytes())
    result = run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--html", str(page))
    assert result.exit_code == 2 and "holds holiday.jpg" in stderr_of(result) and kept.exists()
    kept.unlink()
    inside = folder / "r.json"
    result = run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--json", str(inside), "--html", str(page))
    assert result.exit_code == 2 and "which writing the page replaces" in stderr_of(result) and not inside.exists()
    assert run("scan", str(lib), "--no-cache", "-q", "--workers", "1", "--html", str(page)).exit_code == 0


def test_odd_outputs_caches_and_settings_are_refused_in_one_line(photos):
    """A device, socket or pipe as an output was replaced by a file or waited on for ever; a cache under
    a file, a settings file not in UTF-8, and a page named through a link ended in unexpected errors."""
    import socket

    lib = photos / "lib"
    scan_to = ("scan", str(lib), "--no-cache", "-q", "--workers", "1")
    fifo, sock = photos / "fifo", photos / "sock"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        for out in (fifo, sock):
            result = run(*scan_to, "--json", str(out))
            assert result.exit_code == 2 and "not a regular file" in stderr_of(result), out
        assert run("plan", str(photos / "r.json"), "-o", str(fifo)).exit_code == 2
    finally:
        server.close()
    assert fifo.is_fifo() and sock.is_socket()
    null = photos / "null"  # a device node of our own, like /dev/null: written into, never replaced
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        return  # only root makes device nodes
    assert run(*scan_to, "--json", str(null)).exit_code == 0 and null.is_char_device()
    result = run("scan", str(lib), "-q", "--cache", str(lib / "p.jpg" / "c.sqlite"))
    assert result.exit_code == 2 and "a folder on its way is a file" in stderr_of(result)
    result = run(*scan_to, "--config", str(lib / "p.jpg"))
    assert result.exit_code == 2 and "cannot read config file" in stderr_of(result)
    assert run(*scan_to, "--html", str(photos / "page.html")).exit_code == 0
    (photos / "else").mkdir()
    assert run(*scan_to, "--html", str(photos / "else" / "real.html")).exit_code == 0
    (photos / "link.html").symlink_to(photos / "else" / "real.html")
    assert run(*scan_to, "--html", str(photos / "link.html")).exit_code == 0
    inside = photos / "link_files" / "r.json"
    result = run(*scan_to, "--html", str(photos / "link.html"), "--json", str(inside))
    assert result.exit_code == 2 and "which writing the page replaces" in stderr_of(result) and not inside.exists()


def test_pipes_as_inputs_and_other_impossible_places_are_refused_at_once(photos, tmp_path):
    """A pipe given as a report, plan, journal or settings file was waited on for ever; a folder that
    cannot be written was found only after the scan; a demo library named as a file, or a number of
    workers no machine has, ended in unexpected errors."""
    fifo = photos / "fifo"
    os.mkfifo(fifo)
    for args in (
        ("apply", str(fifo)),
        ("plan", str(fifo), "-o", str(photos / "p.json")),
        ("report", str(fifo), "--html", str(photos / "x.html")),
        ("undo", str(fifo)),
        ("scan", str(photos / "lib"), "--no-cache", "--config", str(fifo)),
    ):
        result = run(*args)
        assert result.exit_code == 2 and "not a regular file" in stderr_of(result), args
    locked = photos / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere
            result = run("scan", str(photos / "lib"), "--no-cache", "--json", str(locked / "r.json"))
            assert result.exit_code == 2 and "cannot write in" in stderr_of(result)
    finally:
        locked.chmod(0o700)
    assert run("demo", str(photos / "lib" / "p.jpg")).exit_code == 2
    result = run("scan", str(photos / "lib"), "--no-cache", "--workers", "3000000000")
    assert result.exit_code == 2 and "workers must be" in stderr_of(result)
