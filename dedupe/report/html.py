"""The HTML report a person reviews: one self-contained page plus a sibling folder of small images.

The page carries the report as JSON and renders it with its own script, a page of groups at a time, so
that 20,000 groups open quickly; nothing is fetched from the network and it works from file://. It is
also where a person reviews: keep/remove per file, "not duplicates" and "keep all" per group, kept in
the browser's local storage under the report's id, and saved as a plan that `dedupe apply` carries out.
Templates are jinja2 with autoescaping; report strings reach the page only as escaped JSON or as text.
Thumbnails and difference views are made at report time from the files, in worker processes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..diff import DIFF_SIDE
from ..progress import CancelCheck, NullProgress, Progress, check, never
from ..walk import REPORT_MARKER
from . import human_bytes
from .jsonreport import ReportError

THUMB = 360
"""Long side of the thumbnails, in pixels (shown at about 250); each picture is decoded once, at
diff.DIFF_SIDE, and its thumbnail reduced from that."""


def assets_dir(html_path: Path) -> Path:
    """The folder beside the page that holds its images: report.html -> report_files/."""
    return html_path.with_name(html_path.stem + "_files")


_OWN_FILES = re.compile(r"(t\d+_\d+\.jpg|d\d+_\d+\.png|s\d+_\w+\.jpg)")
"""The names of the images a page's folder holds (see _jobs), beside its marker."""


def check_assets(html_path: str | os.PathLike) -> None:
    """ReportError unless the page's folder of images is free, or an earlier report's holding only what a
    report writes: it is replaced whole, and a folder of photos that happened to have its name, or a file
    a person put in an earlier one (a report, the cache, a photo), was deleted with it."""
    folder = assets_dir(Path(html_path))
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir() or not (folder / REPORT_MARKER).is_file():
        raise ReportError(
            f"{folder} exists and is not the folder of an earlier dedupe report: writing the page would "
            "replace it; choose another name for the page"
        )
    for entry in os.scandir(folder):
        own = entry.name == REPORT_MARKER or _OWN_FILES.fullmatch(entry.name)
        if not own or not entry.is_file(follow_symlinks=False):
            raise ReportError(
                f"{folder} holds {entry.name}, which no dedupe report wrote: writing the page would delete it; "
                "move it out or choose another name for the page"
            )


def _script_json(data) -> Markup:
    """JSON that can sit inside <script>: '<', '>' and '&' escaped, everything non-ASCII escaped too
    (file names that are not UTF-8 arrive as lone surrogates)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


_EXACT = ("size", "mtime_ns", "device", "inode")
"""Integers a plan must give back exactly: as text in the page, since mtime_ns (about 1.7e18) is beyond
the integers a JavaScript number holds exactly."""


def _page_groups(report: dict) -> list[dict]:
    return [
        {**g, "members": [{**m, **{k: str(m[k]) for k in _EXACT}} for m in g["members"]]} for g in report["groups"]
    ]


def report_id(report: dict) -> str:
    """The report's id; for a report from before ids, a digest of when and where it scanned."""
    if report.get("report_id"):
        return report["report_id"]
    return hashlib.sha1(json.dumps([report["started"], report["finished"], report["roots"]]).encode()).hexdigest()[:32]


def _jobs(report: dict, folder: Path) -> list[tuple]:
    """One job per group (its files, the keeper first) and one per similar shot's picture.

    A group's job decodes each file once: its thumbnail and, for a near member, its difference view
    against the keeper, decoded once for the whole group. Each file is (path, full size, thumbnail file,
    difference file or None, transform); the full sizes place a crop box, given in full-size pixels, on
    the reduced pictures."""
    jobs = []
    for g in report["groups"]:
        files = []
        for i, m in enumerate(g["members"]):
            diff = str(folder / f"d{g['id']}_{i}.png") if m["relation"] == "near" else None
            entry = (m["path"], (m["width"], m["height"]), str(folder / f"t{g['id']}_{i}.jpg"), diff, m["transform"])
            if m["path"] == g["keeper"]:
                files.insert(0, entry)
            else:
                files.append(entry)
        jobs.append(files)
    for n, s in enumerate(report.get("similar", [])):
        for side, path in (("a", s["a"]), ("b", s["b"])):
            jobs.append([(path, None, str(folder / f"s{n}_{side}.jpg"), None, {})])
    return jobs


def _make(files: list[tuple]) -> list[tuple[str, int]]:
    """Make one job's images; (file, boxes) for each made. A file that cannot be read any more just has
    no image (and its members no difference view)."""
    from PIL import Image

    from ..decode import decode_color, shrink
    from ..diff import difference, render_diff

    made: list[tuple[str, int]] = []
    keeper = None
    for n, (path, size, thumb, diff_out, transform) in enumerate(files):
        try:
            picture = decode_color(path, DIFF_SIDE)
        except Exception:  # moved or broken since the scan: the page shows the file without images
            continue
        Image.fromarray(shrink(picture, THUMB)).save(thumb, "JPEG", quality=82)
        made.append((thumb, 0))
        if n == 0:
            keeper = (picture, size)
        elif diff_out is not None and keeper is not None:
            try:
                diff = difference(keeper[0], picture, transform or {}, keeper[1], size)
            except Exception:  # an alignment that cannot be made: no difference view, the rest stands
                continue
            Path(diff_out).write_bytes(render_diff(diff))
            made.append((diff_out, len(diff.boxes)))
    return made


def _make_all(jobs: list[list[tuple]], workers: int, progress: Progress, cancel: CancelCheck) -> dict[str, int]:
    """{file: boxes} of the images made."""
    made: dict[str, int] = {}
    if workers <= 1 or len(jobs) < 4:
        results = map(_make, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_make, jobs, chunksize=2)
    try:
        for items in results:
            check(cancel)
            made.update(items)
            progress.advance()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return made


def write_html(
    report: dict,
    path: str | os.PathLike,
    workers: int = 0,
    progress: Progress | None = None,
    cancel: CancelCheck = never,
    images: bool = True,
) -> Path:
    """Write the page for `report` (the JSON report's data) at `path`, and its images beside it.

    Returns the folder of images. An existing folder of that name from an earlier report is replaced;
    any other is refused (check_assets).
    `images=False` writes the page alone (the files are elsewhere, or only the page is being measured).
    """
    progress = progress or NullProgress()
    path = Path(path)
    folder = assets_dir(path)
    check_assets(path)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / REPORT_MARKER).write_text(
        "Thumbnails and difference views of a dedupe report; dedupe scan skips this folder.\n"
    )
    jobs = _jobs(report, folder) if images else []
    progress.stage("report: thumbnails and difference views", len(jobs))
    made = _make_all(jobs, workers or (os.cpu_count() or 1), progress, cancel)

    def rel(file: str) -> str | None:
        return f"{folder.name}/{Path(file).name}" if file in made else None

    assets = {}
    for g in report["groups"]:
        row = []
        for i, m in enumerate(g["members"]):
            diff = str(folder / f"d{g['id']}_{i}.png")
            row.append({"thumb": rel(str(folder / f"t{g['id']}_{i}.jpg")), "diff": rel(diff), "boxes": made.get(diff)})
        assets[g["id"]] = row
    similar = [
        {**s, "assets": [rel(str(folder / f"s{n}_a.jpg")), rel(str(folder / f"s{n}_b.jpg"))]}
        for n, s in enumerate(report.get("similar", []))
    ]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dedupe.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    script = resources.files("dedupe.report").joinpath("templates/report.js").read_text("utf-8")
    page = env.get_template("report.html.j2").render(
        summary=report["summary"],
        stats=report["stats"],
        tool=report["tool"],
        roots=report["roots"],
        started=report["started"],
        finished=report["finished"],
        settings_text=json.dumps(report["settings"], indent=1, ensure_ascii=True),
        bytes_text=human_bytes(report["summary"]["bytes_freed"]),
        problems=report["problems"],
        similar_count=len(similar),
        suppressed=report["summary"].get("suppressed_groups", 0),
        data_json=_script_json(
            {
                "report_id": report_id(report),
                "roots": report["roots"],
                "groups": _page_groups(report),
                "similar": similar,
                "assets": assets,
            }
        ),
        script=Markup(script),
    )
    path.write_text(page, encoding="utf-8", errors="backslashreplace")
    return folder
