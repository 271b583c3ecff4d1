"""The JSON report: the machine contract between `scan` and everything that acts on its result.

Its shape is fixed by schema.json beside this file (SCHEMA_VERSION); a reader refuses a report with a
newer major version instead of guessing.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from .. import __version__
from ..model import Member, ScanResult

SCHEMA_VERSION = 1


class ReportError(ValueError):
    """A report file that cannot be used; the message is one line for the user."""


def schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def _member(m: Member, decided: bool) -> dict:
    return {
        "path": m.file.path,
        "root": m.file.root,
        "relation": m.relation,
        "action": "keep" if m.relation == "keeper" or decided else "remove",
        "size": m.file.size,
        "mtime_ns": m.file.mtime_ns,
        "device": m.file.device,
        "inode": m.file.inode,
        "width": m.info.width,
        "height": m.info.height,
        "format": m.info.format,
        "lossless": m.info.lossless,
        "exif_date": m.info.exif_date,
        "camera": m.info.camera,
        "content_hash": m.content_hash,
        "phash": f"{m.phash:016x}",
        "score": m.score,
        **({"cut_short": m.info.cut_short} if m.info.cut_short else {}),
        **m.evidence,
    }


def report_dict(result: ScanResult, argv: list[str] | None = None) -> dict:
    """The report as plain data, in the shape schema.json describes."""
    groups = []
    for n, g in enumerate(result.groups, 1):
        groups.append(
            {
                "id": n,
                "kind": g.kind,
                "keeper": g.members[g.keeper].file.path,
                "keeper_reason": g.keeper_reason,
                "bytes_freed": g.bytes_freed,
                **({"decision": g.decision} if g.decision else {}),
                "members": [_member(m, g.decision is not None) for m in g.members],
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "report_id": result.report_id,
        "tool": {"name": "dedupe", "version": __version__},
        "started": result.started,
        "finished": result.finished,
        "argv": list(argv or []),
        "roots": result.roots,
        "settings": result.settings,
        "stats": result.stats,
        "summary": {
            "groups": len(result.groups),
            "exact_groups": sum(g.kind == "exact" for g in result.groups),
            "near_groups": sum(g.kind == "near" for g in result.groups),
            "files_to_remove": result.files_to_remove,
            "bytes_freed": result.bytes_freed,
            "problems": len(result.problems),
            "suppressed_groups": result.stats.get("suppressed_groups", 0),
        },
        "groups": groups,
        "problems": [{"path": p.path, "stage": p.stage, "reason": p.reason, "kind": p.kind} for p in result.problems],
        "similar": [
            {"a": s.a, "b": s.b, "score": s.score, "overlap": s.overlap, "inliers": s.inliers} for s in result.similar
        ],
    }


def dumps(report: dict) -> str:
    """The report as JSON text, one top-level key per line and one group (or problem) per line: the C
    encoder writes each line, where indenting everything took the pure-Python one (0.5 s for 1,000
    groups, a quarter of a rescan), and diffs between reports still show group by group."""

    def value(v) -> str:
        if isinstance(v, list) and v:
            return "[\n  " + ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in v) + "\n ]"
        return json.dumps(v, ensure_ascii=False)

    return "{\n " + ",\n ".join(f"{json.dumps(k)}: {value(v)}" for k, v in report.items()) + "\n}"


def write_report(result: ScanResult, path: str | os.PathLike, argv: list[str] | None = None) -> None:
    """Write the report atomically: a reader never sees half a file."""
    path = Path(path)
    if path.is_symlink():  # written through, as any other output is: replaced, the link lost its target
        path = path.resolve()
    data = dumps(report_dict(result, argv))
    if path.is_char_device():  # /dev/null: a rename would replace the device with a file
        path.write_text(data + "\n", encoding="utf-8", errors="backslashreplace")
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        # A file name that is not valid UTF-8 reaches Python as lone surrogates; written as the JSON escape
        # \udcXX it reads back as the same name, and the file stays valid UTF-8 JSON.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(data)
            fh.write("\n")
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    """The permissions a new report gets: those of the report it replaces, else what the umask allows of
    rw-rw-rw- as for any file written (mkstemp's 0600 hid a rescanned shared report from others)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def read_report(path: str | os.PathLike) -> dict:
    """A saved report as plain data, after checking that this version of dedupe can read it."""
    if os.path.exists(path) and not os.path.isfile(path):  # a pipe would be waited on for ever
        raise ReportError(f"{path} is not a regular file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ReportError(f"report not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable, not JSON, a NUL in the path
        raise ReportError(f"cannot read report {path}: {exc}") from None
    if not isinstance(data, dict) or "groups" not in data or "schema_version" not in data:
        raise ReportError(f"{path} is not a dedupe report")
    version = data["schema_version"]
    if type(version) is not int:
        raise ReportError(f"{path}: schema_version must be an integer, not {version!r}")
    if version > SCHEMA_VERSION:
        raise ReportError(f"{path} has report schema version {version}; this dedupe reads up to {SCHEMA_VERSION}")
    for key, kind in (("roots", list), ("groups", list), ("summary", dict)):
        if not isinstance(data.get(key), kind):
            raise ReportError(f"{path}: {key} is missing or of another type; not a report dedupe can use")
    return data
