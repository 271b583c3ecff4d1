"""The `dedupe` command: parse, build Settings, call the library, render, exit.

Exit codes: 0 success (per-file problems are reported, not fatal), 1 unexpected failure, 2 bad usage,
130 interrupted (Ctrl-C), 128 + the signal's number when stopped by SIGTERM or SIGHUP.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .config import ConfigError, load_settings
from .malloc import MAPPED_FROM, map_large_blocks
from .progress import Cancelled
from .report import human_bytes

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find every copy of a photo in a library.")


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {127: "\\x7f"}


def _shown(path: object) -> str:
    """A path as one line: a newline or other control character in a file name is printed escaped, so
    that one entry of a dry run cannot split in two or pass for another line."""
    return str(path).translate(_CONTROL)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"dedupe: {_shown(message)}", err=True)
    raise typer.Exit(code)


_OWN = {
    "report": re.compile(rb'\A\{\s*"schema_version":\s*\d+,\s*"report_id":\s*"\w+",\s*"tool":\s*\{"name":\s*"dedupe"'),
    "page": re.compile(rb'<meta name="generator" content="dedupe">|<title>dedupe report'),
    "plan": re.compile(rb'\A\{\s*"plan_version":\s*1,\s*"roots":'),
}
"""How each output of a command is known in a file it would replace: only its own kind of file is replaced."""


def _output(path: Optional[Path], what: str, inputs: tuple[Optional[Path], ...] = ()) -> None:
    """Refuse a file to write over anything but an earlier output of the same kind: a report, a plan or a
    difference picture written over the photo, the cache or the settings it was given destroyed them, and
    no list of picture formats knows every camera's raw files. An earlier report, plan or difference
    picture (known by its mark) is replaced."""
    if path is None:
        return
    if path.is_symlink() and not path.exists():
        _fail(f"{path} is a symbolic link to nothing: give the {what} a real path")
    if not path.resolve().parent.is_dir():
        _fail(f"folder for the {what} does not exist: {path.parent}")
    if not os.access(path.resolve().parent, os.W_OK):  # found before the work, not after it
        _fail(f"cannot write in {path.parent}: choose another place for the {what}")
    if not path.exists():
        return
    if path.is_dir():
        _fail(f"{path} is a folder: give a file name for the {what}")
    if path.is_char_device():  # /dev/null: written into, never replaced (write_report)
        return
    if not path.is_file():  # a block device, a socket or a pipe: replaced by a file, or waited on for ever
        _fail(f"{path} is not a regular file: give the {what} another name")
    for given in inputs:
        if given is not None and given.exists() and path.samefile(given):
            _fail(f"{path} is also what this command reads: the {what} would replace it")
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048)
    except OSError:
        return  # writing it will say why
    from .compare import is_diff_png

    own = is_diff_png(head) if what == "difference picture" else _OWN[what].search(head) is not None
    if not own and head:
        _fail(f"{path} exists and is not an earlier dedupe {what}: the {what} would replace it; choose another name")


def _page(html_out: Optional[Path], used: tuple[Optional[Path], ...] = ()) -> None:
    """Refuse a page whose folder of images would replace a folder that is not an earlier report's, or one
    that holds a file or folder the command reads or writes (`used`): the folder is replaced whole."""
    if html_out is None:
        return
    from .report.html import assets_dir, check_assets
    from .report.jsonreport import ReportError

    try:
        check_assets(html_out)
    except ReportError as exc:
        _fail(str(exc))
    folder = assets_dir(html_out).resolve()  # beside the name given, as write_html puts it
    for p in used:
        if p is not None and folder in (p.resolve(), *p.resolve().parents):
            _fail(f"{p} lies in {folder}, which writing the page replaces: choose another name for the page")


class TqdmProgress:
    """One tqdm bar per stage on stderr; notes as plain lines. Bars only when stderr is a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()
        self.bar = None

    def stage(self, title: str, total: int | None) -> None:
        self._end_bar()
        if self.bars:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no monitor thread: worker processes can then be forked (workers._context)
            self.bar = tqdm(
                total=total,
                desc=title,
                unit=" files" if total is None else "",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, message: str) -> None:
        self._end_bar()
        if not self.quiet:
            typer.echo(f"  {message}", err=True)

    def close(self) -> None:
        self._end_bar()

    def _end_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _summary(result, json_path: Path | None) -> str:
    s = result.stats
    errors = sum(p.kind == "error" for p in result.problems)
    skipped = sum(p.kind == "skipped" for p in result.problems)
    warnings = len(result.problems) - errors - skipped
    exact = sum(g.kind == "exact" for g in result.groups)
    hidden = s.get("suppressed_groups", 0)
    decided = sum(g.decision is not None for g in result.groups)
    lines = [
        f"Files seen: {s['files_seen']:,}; images read: {s['images_decoded'] + s.get('exact_copies', 0):,}"
        f" ({s.get('exact_copies', 0):,} of them byte-identical copies)",
        f"Duplicate groups: {len(result.groups):,} ({exact:,} exact, {len(result.groups) - exact:,} near)",
        *([f"Hidden by earlier decisions: {hidden:,} groups (--ignore-decisions shows them)"] if hidden else []),
        *([f"Decided earlier, shown because of --ignore-decisions: {decided:,} groups (all kept)"] if decided else []),
        f"Files that could go: {result.files_to_remove:,}, freeing {human_bytes(result.bytes_freed)}",
        *([f"Similar shots (different photos, kept apart): {len(result.similar):,} pairs"] if result.similar else []),
        f"Problems: {errors:,} unreadable or broken files, {skipped:,} skipped (not images, links),"
        f" {warnings:,} warnings (e.g. misnamed files)",
        f"Time: {s['timings'].get('total', 0):.1f} s",
    ]
    if json_path is not None:
        lines.append(f"Report: {json_path}")
    return "\n".join(lines)


def _settings(config: Optional[Path], **flags):
    try:
        return load_settings(config, **flags)
    except ConfigError as exc:
        _fail(str(exc))


@app.command()
def scan(
    roots: List[Path] = typer.Argument(..., help="Folders (or files) to scan.", show_default=False),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report here (and a _files folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML settings file (see config.example.toml)."),
    include: Optional[List[str]] = typer.Option(None, "--include", help="Only files matching this glob (repeatable)."),
    exclude: Optional[List[str]] = typer.Option(
        None, "--exclude", help="Skip files or folders matching this glob (repeatable)."
    ),
    hidden: Optional[bool] = typer.Option(None, "--hidden/--no-hidden", help="Look inside hidden files and folders."),
    follow_symlinks: Optional[bool] = typer.Option(
        None, "--follow-symlinks/--no-follow-symlinks", help="Follow symbolic links."
    ),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Report images with more pixels than this."),
    hash_radius: Optional[int] = typer.Option(None, "--hash-radius", help="pHash distance (of 64) to consider a pair."),
    ssim_threshold: Optional[float] = typer.Option(None, "--ssim-threshold", help="Least SSIM for the same picture."),
    rotations: Optional[bool] = typer.Option(
        None, "--rotations/--no-rotations", help="Find copies turned by 90/180/270."
    ),
    mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="Find mirrored copies."),
    crops: Optional[bool] = typer.Option(None, "--crops/--no-crops", help="Find crops by keypoints."),
    min_crop_area: Optional[float] = typer.Option(
        None, "--min-crop-area", help="Least share of a picture a crop keeps."
    ),
    similar: Optional[bool] = typer.Option(
        None, "--similar/--no-similar", help="Also list similar shots (never removed)."
    ),
    keeper_rules: Optional[str] = typer.Option(None, "--keeper-rules", help="Comma-separated keeper rules, in order."),
    ignore_decisions: Optional[bool] = typer.Option(
        None,
        "--ignore-decisions/--use-decisions",
        help="Also show the groups that remembered decisions (not duplicates, keep all) hide.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (0 = one per core)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache file (default: the user cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Keep nothing between scans (a temporary cache)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output, only the summary."),
) -> None:
    """Find duplicate photos under ROOTS (read-only) and print a summary.

    What is read from each file is kept in a cache, so a second scan reads only new and changed files."""
    from .pipeline import scan as run_scan
    from .report.jsonreport import write_report

    for root in roots:
        if not root.exists():
            _fail(f"no such file or folder: {root}")
    if json_out is not None and html_out is not None and json_out.resolve() == html_out.resolve():
        _fail(f"--json and --html name the same file: {json_out}")
    cache_file = _cache_path(cache, no_cache)
    _output(json_out, "report", (*roots, config, cache_file))
    _output(html_out, "page", (*roots, config, cache_file))
    _page(html_out, (*roots, config, cache_file, json_out))
    settings = _settings(
        config,
        include=tuple(include) if include else None,
        exclude=tuple(exclude) if exclude else None,
        hidden=hidden,
        follow_symlinks=follow_symlinks,
        max_pixels=max_pixels,
        hash_radius=hash_radius,
        ssim_threshold=ssim_threshold,
        rotations=rotations,
        mirror=mirror,
        crops=crops,
        min_crop_area=min_crop_area,
        similar=similar,
        keeper_rules=tuple(r.strip() for r in keeper_rules.split(",") if r.strip()) if keeper_rules else None,
        ignore_decisions=ignore_decisions,
        workers=workers,
    )
    progress = TqdmProgress(quiet)
    result = run_scan(roots, settings, progress=progress, cache=cache_file)
    if json_out is not None:
        write_report(result, json_out, argv=sys.argv)
    if html_out is not None:
        from .report.html import write_html
        from .report.jsonreport import report_dict

        write_html(report_dict(result, sys.argv), html_out, settings.workers, progress)
        progress.close()
    typer.echo(_summary(result, json_out))
    if html_out is not None:
        typer.echo(f"HTML report: {html_out} (open it in a browser)")


def _cache_path(cache: Optional[Path], no_cache: bool) -> Optional[Path]:
    if cache is not None and no_cache:
        _fail("--cache and --no-cache cannot be used together")
    if no_cache:
        return None
    from .cachefile import CacheError, default_path, refuse_foreign

    path = cache if cache is not None else default_path()
    if any(p.exists() and not p.is_dir() for p in path.parents):
        _fail(f"--cache {path}: a folder on its way is a file")
    try:  # before anything is read or done: apply acted on every file, then found its --cache was a photo
        refuse_foreign(path)
    except CacheError as exc:
        _fail(str(exc))
    return path


cache_app = typer.Typer(no_args_is_help=True, help="Look at or clear the feature cache.")
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(cache: Optional[Path] = typer.Option(None, "--cache", help="Cache file (default: the user cache).")):
    """Where the cache is, how big, and how many files, images and verdicts it holds."""
    from .cache import info

    found = info(_cache_path(cache, False))
    typer.echo(f"Cache: {found['path']}")
    if not found["exists"]:
        typer.echo("  (empty: no scan has used it yet)")
        return
    typer.echo(f"  size on disk: {human_bytes(found['bytes'])}")
    if found["snapshot_bytes"]:
        typer.echo(f"  library snapshots (for fast repeated searches): {human_bytes(found['snapshot_bytes'])}")
    typer.echo(f"  files known: {found['files']:,}; images: {found['images']:,}; pair verdicts: {found['verdicts']:,}")
    typer.echo(f"  decisions remembered (not duplicates, keep all): {found['decisions']:,}")
    for w in found.get("warnings", []):
        typer.echo(f"  warning: {w}")


@cache_app.command("clear")
def cache_clear(cache: Optional[Path] = typer.Option(None, "--cache", help="Cache file (default: the user cache).")):
    """Delete the cache: the next scan reads every file again, and remembered decisions are forgotten."""
    from .cache import clear

    path = _cache_path(cache, False)
    freed = clear(path)
    typer.echo(f"Cleared {path}: {human_bytes(freed)} freed" if freed else f"Nothing to clear at {path}")


@app.command()
def report(
    report_json: Path = typer.Argument(..., help="A JSON report written by `dedupe scan --json`."),
    html_out: Path = typer.Option(..., "--html", help="Write the HTML report here (and a _files folder)."),
    workers: int = typer.Option(0, "--workers", help="Processes making thumbnails (0 = one per core)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Render the HTML report again from a saved JSON report, without scanning."""
    from .report.html import write_html
    from .report.jsonreport import ReportError, read_report

    _output(html_out, "page", (report_json,))
    _page(html_out, (report_json,))
    try:
        data = read_report(report_json)
    except ReportError as exc:
        _fail(str(exc))
    progress = TqdmProgress(quiet)
    from jinja2 import TemplateError

    try:
        write_html(data, html_out, workers, progress)
    except (TypeError, KeyError, AttributeError, ValueError, TemplateError) as exc:
        _fail(f"{report_json} is out of shape, the page cannot be drawn ({type(exc).__name__}: {exc})")
    progress.close()
    typer.echo(f"HTML report: {html_out} ({len(data['groups']):,} groups; open it in a browser)")


DECISIONS_CACHE = typer.Option(None, "--cache", help="Cache file that remembers decisions (default: the user cache).")
KEEP_IN = typer.Option(None, "--keep-in", help="Reference folder: nothing under it goes (repeatable).")
ONLY = typer.Option(None, "--only", help="Remove only byte-identical copies (exact) or only the others (near).")
RULES = typer.Option(None, "--keeper-rules", help="Choose keepers again by these comma-separated rules.")


def _plan(
    source: Path,
    keep_in: Optional[List[Path]],
    only: Optional[str],
    rules: Optional[str],
    move_to: Optional[Path] = None,
) -> dict:
    from .actions.plan import PlanError, load_plan

    keeper_rules = None
    if rules:
        keeper_rules = tuple(r.strip() for r in rules.split(",") if r.strip())
        _settings(None, keeper_rules=keeper_rules)  # checks the rule names
    try:
        return load_plan(source, [str(p) for p in keep_in or []], only, keeper_rules, move_to)
    except PlanError as exc:
        _fail(str(exc))


@app.command()
def plan(
    report_json: Path = typer.Argument(..., help="A JSON report written by `dedupe scan --json`."),
    out: Path = typer.Option(..., "-o", "--output", help="Write the plan (JSON) here."),
    keep_in: Optional[List[Path]] = KEEP_IN,
    only: Optional[str] = ONLY,
    keeper_rules: Optional[str] = RULES,
) -> None:
    """Write the decision per file (keep / remove) to a plan that a person can edit; changes nothing."""
    import json

    _output(out, "plan", (report_json,))
    decided = _plan(report_json, keep_in, only, keeper_rules)
    out.write_text(json.dumps(decided, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    goes = [sum(f["action"] == "remove" for f in g["files"]) for g in decided["groups"]]
    typer.echo(f"Plan: {sum(goes):,} files to remove in {sum(map(bool, goes)):,} groups, written to {out}")


@app.command()
def apply(
    source: Path = typer.Argument(..., help="A JSON report or a plan."),
    keep_in: Optional[List[Path]] = KEEP_IN,
    only: Optional[str] = ONLY,
    keeper_rules: Optional[str] = RULES,
    move_to: Optional[Path] = typer.Option(None, "--move-to", help="Move the files that go into this folder."),
    trash: bool = typer.Option(False, "--trash", help="Send the files that go to the platform trash."),
    hardlink: bool = typer.Option(False, "--hardlink", help="Replace byte-identical copies by hard links."),
    symlink: bool = typer.Option(False, "--symlink", help="Replace byte-identical copies by symbolic links."),
    delete: bool = typer.Option(False, "--delete", help="Delete the files that go, permanently."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before --delete."),
    paranoid: bool = typer.Option(False, "--paranoid", help="Hash byte-identical files again before acting."),
    journal_dir: Optional[Path] = typer.Option(None, "--journal-dir", help="Where the journal goes."),
    cache: Optional[Path] = DECISIONS_CACHE,
) -> None:
    """Act on a report or a plan: a dry run unless an action is given.

    The dry run prints every operation and the bytes it would free. With one action (--move-to DIR,
    --trash, --hardlink, --symlink, --delete) it is carried out, journaled for `dedupe undo`, and the
    plan's decisions (not duplicates, keep all) are remembered, as `dedupe decide` does. Each group
    is checked against the disk first: a group with a file changed since the scan is skipped whole."""
    decided = _plan(source, keep_in, only, keeper_rules, move_to)
    honoured = _honour_remembered(decided, _cache_path(cache, False))
    for gid, kind, kept in honoured:
        if kept is None:
            typer.echo(f"skip group {gid}: remembered as {kind.replace('_', ' ')} (`dedupe decide`)")
        else:
            typer.echo(f"group {gid}: {kept} files kept as decided (`dedupe decide`) before it gained a file")
    chosen = [
        name
        for name, on in (
            ("move", move_to is not None),
            ("trash", trash),
            ("hardlink", hardlink),
            ("symlink", symlink),
            ("delete", delete),
        )
        if on
    ]
    if len(chosen) > 1:
        _fail("choose one action: --move-to, --trash, --hardlink, --symlink or --delete")
    if chosen:
        _act(decided, chosen[0], move_to, journal_dir, paranoid, yes, _cache_path(cache, False))
        return
    from .actions.dryrun import dry_run
    from .decisions import plan_decisions

    run = dry_run(decided, paranoid)
    for path, keeper in run.operations:
        typer.echo(f"would remove {_shown(path)}  (duplicate of {_shown(keeper)})")
    for gid, reasons in run.skipped:
        typer.echo(f"skip group {gid}: " + _shown("; ".join(reasons)))
    typer.echo(
        f"Dry run: {len(run.operations):,} files would go, freeing {human_bytes(run.bytes_freed)}; "
        f"{len(run.skipped):,} groups skipped (a file changed since the scan, or one not to act on)"
        + (f", {sum(k is None for *_, k in honoured):,} kept whole as remembered" if honoured else "")
        + ". Nothing was changed."
    )
    remembered = len(plan_decisions(decided))
    if remembered:
        typer.echo(
            f"With an action, {remembered:,} decisions (not duplicates, keep all) would be remembered; "
            "`dedupe decide` remembers them without acting."
        )


def _honour_remembered(decided: dict, cache: Path) -> list[tuple[object, str, int | None]]:
    """decisions.honour with the decisions remembered in `cache`, read before anything is done."""
    from .cachefile import CacheError
    from .cachefile import remembered as stored
    from .decisions import Decided, honour

    try:
        remembered = Decided(stored(cache))
    except CacheError as exc:  # before anything is done: files a person kept must not go unseen
        _fail(str(exc))
    return honour(decided, remembered)


def _remember(decided: dict, cache: Path) -> bool:
    """Store the plan's decisions and say what was done, in one line (nothing when it has none); False,
    said on stderr, when the cache could not take them (a full or read-only disk)."""
    from .cachefile import CacheError
    from .decisions import plan_decisions, record

    if not plan_decisions(decided):
        return True
    try:
        done = record(decided, cache)
    except CacheError as exc:
        typer.echo(f"dedupe: decisions NOT remembered: {_shown(exc)}", err=True)
        return False
    typer.echo(
        f"Remembered {sum(done.remembered.values()):,} decisions ({done.remembered['not_duplicates']:,} not "
        f"duplicates, {done.remembered['keep_all']:,} keep all), forgot {done.forgotten:,}, in {cache}: later "
        "scans do not propose those groups (--ignore-decisions shows them)."
    )
    return True


def _act(
    decided: dict,
    action: str,
    move_to: Optional[Path],
    journal_dir: Optional[Path],
    paranoid: bool,
    yes: bool,
    cache: Path,
) -> None:
    """Carry out one action; Ctrl-C (or SIGTERM, SIGHUP) stops after the current operation, with the
    journal complete."""
    from .actions.apply import apply_plan
    from .actions.dryrun import dry_run
    from .actions.plan import PlanError

    if action == "delete" and not yes:
        preview = dry_run(decided)
        if not sys.stdin.isatty():
            _fail("--delete removes files for good: add --yes to confirm")
        if not typer.confirm(
            f"Delete {len(preview.operations):,} files ({human_bytes(preview.bytes_freed)}) "
            "permanently? This cannot be undone"
        ):
            _fail("nothing deleted", 1)
    if journal_dir is not None:  # before any file is touched
        try:
            journal_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(f"--journal-dir {journal_dir}: {exc.strerror or exc}")
    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _: stop.append(number)) for sig in STOP_SIGNALS}
    try:
        result = apply_plan(decided, action, move_to, journal_dir, cancel=lambda: bool(stop), paranoid=paranoid)
    except PlanError as exc:  # found before anything moved: a quarantine that cannot be written
        _fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    kept = _remember(decided, cache)
    for src, what in result.done:
        typer.echo(f"{action} {_shown(src)} -> {_shown(what)}")
    for src, reason in result.failed:
        typer.echo(f"FAILED {_shown(src)}: {reason}", err=True)
    for gid, reasons in result.skipped:
        typer.echo(f"skipped group {gid}: " + _shown("; ".join(reasons)))
    if result.stopped:
        typer.echo(f"dedupe: stopped: {_shown(result.stopped)}", err=True)
    ended = "Interrupted after" if result.interrupted or result.stopped else "Done:"
    typer.echo(
        f"{ended} {len(result.done):,} files ({human_bytes(result.bytes_freed)}), {len(result.failed):,} failed, "
        f"{len(result.skipped):,} groups skipped."
    )
    if action == "delete":
        typer.echo(f"Journal: {result.journal}  (deleted files cannot be brought back)")
    else:
        typer.echo(f"Journal: {result.journal}  (undo with: dedupe undo '{result.journal}')")
    if result.interrupted and stop:  # as a stopped scan exits: 130 for Ctrl-C, 128 + SIGTERM's or SIGHUP's number
        _SAID.append(True)
        raise typer.Exit(128 + stop[0])
    if result.failed or result.interrupted or result.stopped or not kept:
        raise typer.Exit(1)


@app.command()
def decide(
    source: Path = typer.Argument(..., help="A plan saved from the HTML review (or edited by hand)."),
    cache: Optional[Path] = DECISIONS_CACHE,
) -> None:
    """Remember a plan's decisions without acting on any file.

    Groups marked "not duplicates" or "keep all" are stored by the content hashes of their files, so
    later scans do not propose them again, even after renames or moves; a group that gains a new file is
    proposed again. `dedupe scan --ignore-decisions` shows them all."""
    from .decisions import plan_decisions

    decided = _plan(source, None, None, None)
    if not plan_decisions(decided):
        typer.echo(f"{source} holds no decisions (not duplicates, keep all): nothing to remember.")
        return
    if not _remember(decided, _cache_path(cache, False)):
        raise typer.Exit(2)


@app.command()
def undo(journal: Path = typer.Argument(..., help="The journal an apply run printed.")) -> None:
    """Reverse an apply run from its journal, never overwriting anything that appeared since."""
    from .actions.undo import undo as run_undo

    try:
        result = run_undo(journal)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    for path, reason in result.refused:
        typer.echo(f"NOT restored {_shown(path)}: {reason}", err=True)
    for path in result.left:
        typer.echo(f"left {_shown(path)}: a copy a stopped move may have made, the original is in place")
    typer.echo(f"Restored {len(result.restored):,} files; {len(result.refused):,} not restored.")
    if result.refused:
        raise typer.Exit(1)


@app.command()
def demo(
    folder: Path = typer.Argument(..., help="Empty or new folder to write the sample library into."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Write a small generated photo library with planted copies, scan it and show what was found."""
    from .demo import make_library
    from .pipeline import scan as run_scan

    if folder.exists() and not folder.is_dir():
        _fail(f"{folder} is a file; give a new or empty folder")
    if folder.exists() and any(folder.iterdir()):
        _fail(f"{folder} is not empty; give a new or empty folder")
    planted = make_library(folder)
    typer.echo(
        f"Wrote {planted['files']} files to {folder}: {len(planted['groups'])} pictures with copies, "
        f"{planted['singles']} without, {len(planted['junk'])} broken or non-image files."
    )
    result = run_scan([folder], _settings(None), progress=TqdmProgress(quiet))
    root = folder.resolve()
    for n, g in enumerate(result.groups, 1):
        typer.echo(f"\nGroup {n} ({g.kind}), keep the first: {g.keeper_reason}")
        for m in g.members:
            typer.echo(
                f"  {'keep  ' if m.relation == 'keeper' else 'remove'} {m.score:3d}  "
                f"{Path(m.file.path).relative_to(root)}  {_why(m)}"
            )
    if result.problems:
        typer.echo("\nProblems:")
        for p in result.problems:
            typer.echo(f"  {p.kind:7s} {Path(p.path).relative_to(root)}: {p.reason}")
    typer.echo("")
    typer.echo(_summary(result, None))


def _why(m) -> str:
    """A member's evidence in a few words."""
    if m.relation == "keeper":
        return ""
    if m.relation == "exact":
        return "(byte-identical)"
    t = m.evidence.get("transform", {})
    words = [
        f"rotated {t['rotated']}" if "rotated" in t else "",
        "mirrored" if t.get("mirrored") else "",
        f"crop of {t['crop']['of']}" if "crop" in t else "",
        f"straightened {t['straightened']} degrees" if "straightened" in t else "",
        "frame removed" if "frame removed" in t else "",
        "tones matched" if t.get("tones matched") else "",
    ]
    return f"(SSIM {m.evidence.get('ssim', 0):.2f}" + "".join(f", {w}" for w in words if w) + ")"


THRESHOLD = typer.Option(
    None, "--threshold", help="Least score (1-100) of a match (default: 100 x ssim_threshold, i.e. 70)."
)


def _transform_words(t: dict, names: dict[str, str]) -> str:
    """A transform (compare.relate's) in words; `names` says what to call each side ("a" -> "A")."""
    if t.get("similar"):
        return f"overlapping views, not one picture ({t['overlap']:.0%} in common)"
    words = []
    if "rotated" in t:
        words.append(f"turned {t['rotated']} degrees clockwise")
    if t.get("mirrored"):
        words.append("mirrored")
    if "crop" in t:
        whole = [n for n in names if n != t["crop"]["of"]][0]
        x0, y0, x1, y1 = t["crop"]["box"]
        kept = f", {t['kept_area']:.0%} of it" if "kept_area" in t else ""
        words.append(f"{names[t['crop']['of']]} is the part {x0},{y0}-{x1},{y1} of {names[whole]}{kept}")
    if "straightened" in t:
        words.append(f"straightened by {t['straightened']} degrees")
    if "frame removed" in t:
        whose = t["frame removed"]
        words.append("both framed" if whose == "both" else f"{names[whose]} has a frame")
    if t.get("tones matched"):
        words.append("tones edited (brightness, contrast, clipping), compared with tones matched")
    if t.get("aligned") and "crop" not in t:
        words.append("shifted or rescaled slightly")
    return ", ".join(words) or "same frame"


def _compare_text(c) -> str:
    names = {"a": "A", "b": "B"}
    verdict = "a match" if c.match else "not a match"
    regions = "; ".join(f"{x0},{y0}-{x1},{y1}" for x0, y0, x1, y1 in c.regions)
    return "\n".join(
        [
            f"Score {c.score}/100: {c.band} ({verdict} at threshold {c.threshold})",
            f"  A: {c.a} ({c.size_a[0]}x{c.size_a[1]})",
            f"  B: {c.b} ({c.size_b[0]}x{c.size_b[1]})",
            f"  byte-identical:   {'yes' if c.byte_identical else 'no'}",
            f"  hash distance:    pHash {c.phash_distance}, dHash {c.dhash_distance} (of 64 bits)",
            f"  SSIM:             {c.ssim:.3f}",
            f"  MSE, NRMSE:       {c.mse:.1f}, {c.nrmse:.3f} (lowest channel)",
            f"  transform:        {_transform_words(c.transform, names) if c.score >= 50 else 'none found'}",
            f"  keypoint inliers: {c.inliers}",
            f"  differs in:       {len(c.regions)} region{'s' if len(c.regions) != 1 else ''}"
            + (f" (pixels of A: {regions})" if regions else ""),
        ]
    )


@app.command()
def compare(
    a: Path = typer.Argument(..., help="First image (the reference).", show_default=False),
    b: Path = typer.Argument(..., help="Second image.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    diff: Optional[Path] = typer.Option(None, "--diff", help="Write the difference picture (PNG) here."),
    threshold: Optional[int] = THRESHOLD,
    config: Optional[Path] = typer.Option(None, "--config", help="TOML settings file (see config.example.toml)."),
) -> None:
    """Score how alike two images are (0-100) and show the evidence; exit 0 if they are the same picture.

    Bands: 90-100 near identical, 70-89 same picture with visible edits, 50-69 related, under 50
    different. Exit codes: 0 a match, 1 not a match, 2 an error (a missing or unreadable file)."""
    import json

    from .compare import CompareError, diff_png
    from .compare import compare as run_compare

    _output(diff, "difference picture", (a, b, config))
    try:
        result = run_compare(a, b, _settings(config), threshold)
    except CompareError as exc:
        _fail(str(exc))
    if diff is not None:
        diff.write_bytes(diff_png(result))
    if json_out:
        typer.echo(json.dumps({**result.as_dict(), **({"diff": str(diff)} if diff is not None else {})}))
    else:
        typer.echo(_compare_text(result))
        if diff is not None:
            typer.echo(f"Difference picture: {diff}")
    raise typer.Exit(0 if result.match else 1)


def _search_text(result) -> str:
    names = {"query": "the query", "match": "this file"}
    lines = []
    for q in result.queries:
        matches = len(q.matches)
        related = len(q.found) - matches
        count = f"{matches} match{'es' if matches != 1 else ''}" if matches else "no match"
        lines.append(f"{q.query}: {count}" + (f", {related} related" if related else ""))
        for f in q.found:
            how = "byte-identical" if f.byte_identical else _transform_words(f.transform, names)
            lines.append(f"  {f.score:3d}  {f.band:<31}  {f.path}  ({f.width}x{f.height}, {how})")
    return "\n".join(lines)


@app.command()
def search(
    images: List[Path] = typer.Argument(..., help="The pictures to look for.", show_default=False),
    roots: List[Path] = typer.Option(..., "--in", help="Folder to search (repeatable).", show_default=False),
    similar: bool = typer.Option(False, "--similar", help="Also list related pictures (similar shots)."),
    top: Optional[int] = typer.Option(None, "--top", help="At most this many results per picture."),
    threshold: Optional[int] = THRESHOLD,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML settings file (see config.example.toml)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (0 = one per core)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache file (default: the user cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Keep nothing between runs (a temporary cache)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """List the files under --in that are the same picture as each IMAGE, best first, with scores.

    Uses the scan's cache: a folder already scanned or searched is not read again. Exit codes: 0 when
    every IMAGE was found at least once, 1 when some were not, 2 on an error (an unreadable IMAGE)."""
    import json

    from .compare import CompareError
    from .search import search as run_search

    if top is not None and top < 1:
        _fail(f"--top must be 1 or more, not {top}")
    settings = _settings(config, workers=workers)
    progress = TqdmProgress(quiet)
    try:
        result = run_search(
            images, roots, settings, progress, cache=_cache_path(cache, no_cache), similar=similar, top=top,
            threshold=threshold,
        )
    except CompareError as exc:  # and SearchError, a kind of it
        _fail(str(exc))
    s = result.stats
    if not quiet:
        typer.echo(
            f"Searched {s['image_files'] - s['query_files']:,} image files in {s['timings']['total']:.1f} s"
            f" ({s['images_decoded']:,} distinct pictures with the queries, {s['images_from_cache']:,} of them"
            f" from the cache); {len(result.problems):,} could not be read",
            err=True,
        )
    typer.echo(json.dumps(result.as_dict()) if json_out else _search_text(result))
    raise typer.Exit(0 if all(q.matches for q in result.queries) else 1)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"dedupe {__version__}")
        raise typer.Exit(0)


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that stop a command as Ctrl-C does (Windows has no SIGHUP): `kill`, `timeout`, a logout or a
closed terminal would otherwise end the process where it stands, leaving a --no-cache scan's temporary
cache (1.6 GB at 100,000 photos) on disk and the last cache writes unsaved."""

_SIGNALLED: list[int] = []
"""The SIGTERM or SIGHUP that stopped this command, if one did."""
_SAID: list[bool] = []
"""Set by a command stopped by a signal that has said itself what it did (an apply run)."""


def _stopped_by(number: int, _frame) -> None:
    """SIGTERM or SIGHUP unwinds like Ctrl-C (every `finally` runs); the exit code is 128 + its number.
    Later ones are ignored, so that they do not cut the clean-up short: `timeout` signals the process and
    then its process group."""
    _SIGNALLED.append(number)
    for sig in STOP_SIGNALS[1:]:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: turns Ctrl-C, SIGTERM, SIGHUP and unexpected errors into a message and an exit code."""
    map_large_blocks(MAPPED_FROM)
    _SIGNALLED.clear()
    _SAID.clear()
    previous = {sig: signal.signal(sig, _stopped_by) for sig in STOP_SIGNALS[1:]}
    try:
        code = _run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(code)


def _run() -> int:
    """The command's exit code. In non-standalone mode typer returns exit codes (ours from _fail, 130 for
    Ctrl-C) instead of exiting."""
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt, Cancelled):
        code = 130
    except Exception as exc:
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # usage errors
            exc.show()
            return exc.exit_code
        typer.echo(f"dedupe: unexpected error: {type(exc).__name__}: {exc}", err=True)
        return 1
    if code == 130 and not _SAID:
        typer.echo("\ndedupe: interrupted; nothing was changed.", err=True)
        return 128 + _SIGNALLED[0] if _SIGNALLED else code
    return code if isinstance(code, int) else 0
