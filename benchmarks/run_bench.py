"""Measure `dedupe.scan` on a benchmark corpus from ../shared/bench: accuracy, junk handling, speed, memory.

Usage: python benchmarks/run_bench.py [--corpus DIR] [--build dev|scaleN] [--workers N] [--configs NAME[,NAME...]]
                                      [--set KEY=VALUE ...] [--repeat N] [--json OUT]

Several configurations (named presets of Settings, see PRESETS, plus --set overrides applied to all of them) are
measured on the same files, side by side. Every scan runs through the library API in a fresh child process, so
that its peak memory can be measured on its own: os.wait4 returns the child's resource usage, whose ru_maxrss is
that of the largest single process among the scan process and the decode workers it waited for (not their sum).
With --repeat N each configuration is scanned N times, interleaved (A B A B ...), and the speed is the median with
min and max. The report's groups are converted to the scorer's format and scored by the kit's score.py. Before
the timed scans, another child per configuration builds its Settings (so a bad --set fails at once) and measures
the keypoint descriptor memory per image on a sample of the corpus. The pass/fail criteria are printed, but the
exit status is 0 whatever they say: this script measures. It exits non-zero only when it cannot measure: bad usage,
bad settings or no corpus (2), a failed build, scan or scoring (1). Standard library only; the children import dedupe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KIT = HERE.parent.parent / "shared" / "bench"
CACHE = Path.home() / ".cache" / "dedupe-bench"

PRESETS = {
    "default": ({}, "Settings() defaults"),
    "baseline": (
        {"rotations": False, "mirror": False, "crops": False},
        "rotations, mirror and crops off: no keypoints computed (the tool before turned and cropped copies)",
    ),
}
"""Named configurations: (Settings fields that differ from the defaults, description)."""
DESCRIPTOR_SAMPLE = 50
"""Image files (spread evenly over the walk order) on which the keypoint descriptor memory is measured."""
MIN_PRECISION = 0.99
MIN_RECALL = 0.95
RECALL_EXEMPT = ("rotate", "crop", "mirror")
"""Families the detector may treat as different photos (visible rotation, crops, mirror images)."""
ZERO_FP = ("burst", "tile", "junk")
FP_CATEGORIES = ("burst", "tile", "junk", "other", "unknown")
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
"""ru_maxrss is in bytes on macOS and in KiB on Linux."""
BAD_SETTINGS = 2
"""Exit status of a child whose Settings cannot be built from the overrides."""


# ---- in the children (these import dedupe) ----


def _sources(package: Path) -> dict[str, str]:
    """A digest of each .py file of the package, by path relative to it."""
    return {
        f.relative_to(package).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
        for f in sorted(package.rglob("*.py"))
    }


def _package_sources() -> tuple[Path, dict[str, str]]:
    """Where dedupe is and its files' digests, read before it is imported."""
    import importlib.util

    package = Path(importlib.util.find_spec("dedupe").origin).parent
    return package, _sources(package)


def _code(package: Path, before: dict[str, str]) -> dict:
    """The digests, at the start and now, of the package's modules this process imported: the code that ran
    (the CLI, for one, is not among them). The parent checks that every run saw the same files."""
    used = set()
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None)
        if f and Path(f).resolve().is_relative_to(package.resolve()):
            used.add(Path(f).resolve().relative_to(package.resolve()).as_posix())
    after = _sources(package)
    return {
        "before": {k: v for k, v in before.items() if k in used},
        "after": {k: v for k, v in after.items() if k in used},
    }


def _settings(overrides: str):
    """Settings from a JSON object of field overrides (no user config file, so runs compare); exits
    BAD_SETTINGS with a one-line message when a key or value is not accepted."""
    import dataclasses

    import dedupe

    defaults = {f.name: f.default for f in dataclasses.fields(dedupe.Settings)}
    values = {}
    try:
        for key, value in json.loads(overrides).items():
            if key not in defaults:
                raise dedupe.ConfigError(f"unknown setting {key!r} (known: {', '.join(defaults)})")
            default = defaults[key]
            if isinstance(default, tuple) and isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise dedupe.ConfigError(f"{key} must be a {type(default).__name__} like {default!r}, not {value!r}")
            values[key] = value
        return dedupe.Settings(**values)
    except dedupe.ConfigError as exc:
        print(f"run_bench: bad settings: {exc}", file=sys.stderr)
        sys.exit(BAD_SETTINGS)


def child(images: str, report: str, overrides: str, measured: str) -> None:
    """Runs in the child: scan with the given settings, write report and times."""
    package, sources = _package_sources()
    import dedupe

    settings = _settings(overrides)
    started = time.perf_counter()
    result = dedupe.scan([images], settings)
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT
    dedupe.write_report(result, report)
    source = {"version": dedupe.__version__, "path": str(package), "code": _code(package, sources)}
    Path(measured).write_text(json.dumps({"wall_s": wall, "rss_scan_bytes": rss, "dedupe": source}), "utf-8")


def child_descriptors(images: str, overrides: str, out: str) -> None:
    """Runs in a child: the effective settings, and the keypoint descriptor memory per image as the scan keeps it
    (Features.kp_desc + kp_xy; the ScanResult does not keep features, so they are recomputed here)."""
    package, sources = _package_sources()
    from dedupe.features import keypoints
    from dedupe.model import Analysed
    from dedupe.read import analyse
    from dedupe.walk import walk

    settings = _settings(overrides)
    files = walk([images], settings).files
    n = min(DESCRIPTOR_SAMPLE, len(files))
    sample = [files[i * len(files) // n].path for i in range(n)]
    sizes, counts = [], []
    for path in sample:
        got = analyse(path, settings.max_pixels, settings.crops)  # as the scan calls it: keypoints only for crops
        if isinstance(got, Analysed):
            f = got.features
            sizes.append(len(f.kp_desc) * 32 + f.kp_xy.nbytes)
            counts.append(len(f.kp_desc))
    Path(out).write_text(
        json.dumps(
            {
                "settings": settings.as_dict(),
                "code": _code(package, sources),
                "descriptors": {
                    "keypoints_max": keypoints.KEYPOINTS,
                    "computed": settings.crops,
                    "upper_bound_bytes": keypoints.KEYPOINTS * (32 + 2 * 2) if settings.crops else 0,
                    "image_files": len(files),
                    "sampled_files": n,
                    "decoded": len(sizes),
                    "mean_bytes": statistics.fmean(sizes) if sizes else None,
                    "min_bytes": min(sizes, default=None),
                    "max_bytes": max(sizes, default=None),
                    "mean_keypoints": statistics.fmean(counts) if counts else None,
                },
            }
        ),
        "utf-8",
    )


# ---- in the parent (standard library only) ----


def build(corpus: Path, name: str) -> None:
    """Build the corpus with the kit's make_corpus.sh (venv, sources, corpus; each step skipped when done)."""
    m = re.fullmatch(r"scale(\d+)", name)
    profile = ["scale", m.group(1)] if m else ["dev"]
    print(f"building {corpus} with {KIT / 'make_corpus.sh'} ...", flush=True)
    done = subprocess.run(["bash", str(KIT / "make_corpus.sh"), str(corpus.parent), *profile])
    if done.returncode != 0 or not (corpus / "truth.json").is_file():
        sys.exit(f"run_bench: building {corpus} failed (exit {done.returncode})")


def _child(function: str, args: list[str], tmp: Path):
    """Run run_bench.`function`(*args) in a fresh interpreter; (exit status, its resource usage)."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import run_bench; run_bench.{function}(*sys.argv[1:])"
    # cwd=tmp: `-c` puts the working directory first on sys.path, and a checkout there would shadow the dedupe
    # that is installed or on PYTHONPATH
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tmp)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's usage alone, not the build's or score.py's
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode == BAD_SETTINGS:
        sys.exit(BAD_SETTINGS)  # the child has said why
    return proc.returncode, usage


def describe(images: Path, overrides: dict, tmp: Path) -> dict:
    """The effective settings, the source digest and the descriptor memory per image, from a child."""
    out = tmp / "describe.json"
    code, _ = _child("child_descriptors", [str(images), json.dumps(overrides), str(out)], tmp)
    if code != 0:
        print(f"run_bench: measuring the descriptors failed (exit {code})", file=sys.stderr)
        sys.exit(1)
    return json.loads(out.read_text("utf-8"))


def run_scan(images: Path, overrides: dict, tmp: Path) -> tuple[dict, dict]:
    """The scan's JSON report and the measurements: wall time, the scan process's and the whole tree's peak RSS."""
    report, measured = tmp / "report.json", tmp / "measured.json"
    code, usage = _child("child", [str(images), str(report), json.dumps(overrides), str(measured)], tmp)
    if code != 0:
        print(f"run_bench: the scan failed (exit {code})", file=sys.stderr)
        sys.exit(1)
    out = json.loads(measured.read_text("utf-8"))
    out["rss_peak_bytes"] = usage.ru_maxrss * RSS_UNIT
    return json.loads(report.read_text("utf-8")), out


def score(truth: Path, report: dict, tmp: Path) -> dict:
    """score.py's verdict on the report's groups, converted to its PRED format."""
    pred = tmp / "pred.json"
    pred.write_text(json.dumps({"groups": [[m["path"] for m in g["members"]] for g in report["groups"]]}), "utf-8")
    done = subprocess.run(
        [sys.executable, str(KIT / "score.py"), str(truth), str(pred), "--json"], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"run_bench: score.py failed:\n{done.stderr}")
    return json.loads(done.stdout)


def missing_junk(truth: dict, report: dict, images: Path) -> list[dict]:
    """Junk files of the truth that the report does not list among its problems."""
    reported = {os.path.relpath(p["path"], images).replace(os.sep, "/") for p in report["problems"]}
    return [j for j in truth["junk"] if j["path"] not in reported]


def criteria(s: dict, missing: list[dict]) -> list[tuple[bool, str]]:
    """(passed, description with the measured values) for each acceptance criterion."""
    fp = s["fp_breakdown"]
    low = {
        k: v["recall"] for k, v in s["recall_per_family"].items() if k not in RECALL_EXEMPT and v["recall"] < MIN_RECALL
    }
    return [
        (s["precision"] >= MIN_PRECISION, f"precision >= {MIN_PRECISION}: {s['precision']:.4f}"),
        (
            not any(fp.get(k, 0) for k in ZERO_FP),
            "no false positives on " + "/".join(ZERO_FP) + ": " + ", ".join(f"{k} {fp.get(k, 0)}" for k in ZERO_FP),
        ),
        (
            not low,
            f"recall >= {MIN_RECALL} for every family except {', '.join(RECALL_EXEMPT)}: "
            + (", ".join(f"{k} {v:.3f}" for k, v in low.items()) if low else "all met"),
        ),
        (not missing, f"every junk file reported as a problem: {len(missing)} missing"),
    ]


def git_state(package: Path) -> str | None:
    """'git <commit>', plus whether the package folder has uncommitted changes; None outside a checkout."""

    def git(*argv: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *argv], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return None
    return f"git {head}" + (", with uncommitted changes in it" if git("status", "--porcelain", "--", ".") else "")


def parse_set(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON (true, 0.75, ["a"]), or as a plain string when it is not JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def groups_of(report: dict) -> list[list[str]]:
    return sorted(sorted(m["path"] for m in g["members"]) for g in report["groups"])


def table(rows: list[list[str]]) -> list[str]:
    """Aligned columns: the first to the left, the others to the right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]


def overrides_text(overrides: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "none"


def print_config(c: dict, truth: dict, workers: str) -> None:
    """The full block of one configuration: accuracy, junk, speed, memory, criteria."""
    s, missing, runs, summ = c["score"], c["junk_missing"], c["runs"], c["summary"]
    n = len(runs)
    wall = summ["wall_s"]
    print(f"\n==================== configuration {c['name']}: {c['about']}")
    print(f"settings changed from the defaults: {overrides_text(c['changed'])}")
    print(
        f"scan: workers={workers}, {n} run{'s' * (n > 1)}, wall {'median ' * (n > 1)}{wall['median']:.2f} s"
        + (f" (min {wall['min']:.2f}, max {wall['max']:.2f})" if n > 1 else "")
    )
    same = all(r["groups_same_as_first"] for r in runs)
    identical = f"; the groups were identical in all {n} runs" if n > 1 and same else ""
    print(f"\naccuracy (score.py, run 1{identical})")
    print(f"  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    print(
        f"  pairs: true {s['true_pairs']}, predicted {s['pred_pairs']}, TP {s['tp_pairs']}, "
        f"FP {s['fp_pairs']}, FN {s['fn_pairs']}"
    )
    print(f"  groups: true {s['true_groups']}, predicted {s['pred_groups']}, reproduced exactly {s['groups_exact']}")
    for title, tab in (("family", s["recall_per_family"]), ("kind", s["recall_per_kind"])):
        print(f"  recall per {title}:")
        for k, v in tab.items():
            print(f"    {k:18s} {v['found']:5d}/{v['total']:<5d} {v['recall']:.3f}")
    print("  false positive pairs: " + ", ".join(f"{k} {s['fp_breakdown'].get(k, 0)}" for k in FP_CATEGORIES))
    for k, pairs in s["fp_examples"].items():
        for a, b in pairs:
            print(f"    {k}: {a}  <->  {b}")
    for r in runs:
        if not r["groups_same_as_first"]:
            o = r["score"]
            print(
                f"  WARNING: run {r['run']} found other groups: precision {o['precision']:.4f}  "
                f"recall {o['recall']:.4f}  F1 {o['f1']:.4f}"
            )
    junk = truth["junk"]
    print(f"\njunk: {len(junk) - len(missing)} of {len(junk)} junk files are in the report's problems")
    for j in missing:
        print(f"  missing: {j['path']} ({j['why']})")
    stats = runs[0]["stats"]
    rng = (lambda d, f: f" (min {d['min']:{f}}, max {d['max']:{f}})") if n > 1 else (lambda d, f: "")
    print(f"\nspeed{f' (median of {n} runs, with min and max)' if n > 1 else ''}")
    fps, ips = summ["files_per_s"], summ["decoded_per_s"]
    print(f"  files seen {stats['files_seen']}: {fps['median']:.1f} files/s{rng(fps, '.1f')} (scan wall time)")
    decode_s = summ["timings_s"].get("decode")
    print(
        f"  images decoded {stats['images_decoded']}: {ips['median']:.1f} images/s{rng(ips, '.1f')} (scan wall time)"
        + (f", {stats['images_decoded'] / decode_s:.1f}/s in the decode stage alone" if decode_s else "")
    )
    print(
        f"  stage timings (s{', median' if n > 1 else ''}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in summ["timings_s"].items())
    )
    kp = summ["keypoints_s"]
    print(f"  keypoints stage (crop matching; ORB itself runs in decode): {kp['median']:.3f} s{rng(kp, '.3f')}")
    rss, rss_scan = summ["peak_rss_mb"], summ["scan_rss_mb"]
    print("\nmemory")
    of_runs = f" (highest of {n} runs; median {rss['median']:.0f} MB)" if n > 1 else ""
    print(
        f"  peak RSS {rss['max']:.0f} MB{of_runs}: the largest single process, scan or decode worker "
        f"(the scan process alone: {rss_scan['max']:.0f} MB; 1 MB = 2^20 bytes)"
    )
    d = c["descriptors"]
    if d["computed"]:
        print(
            f"  keypoint descriptors per image: upper bound {d['upper_bound_bytes']} B = "
            f"{d['keypoints_max']} keypoints x (ORB descriptor 32 B + float16 x,y 4 B)"
        )
        if d["decoded"]:
            print(
                f"    measured: mean {d['mean_bytes']:.0f} B ({d['mean_keypoints']:.1f} keypoints; "
                f"min {d['min_bytes']}, "
                f"max {d['max_bytes']}) over {d['decoded']} images decoded by dedupe.read.analyse, "
                f"{d['sampled_files']} files spread evenly over the {d['image_files']} image files"
            )
    else:
        print(
            "  keypoint descriptors per image: none (crops off: no keypoints computed); "
            f"measured 0 B on {d['decoded']} of {d['sampled_files']} sampled image files"
        )
    print("\ncriteria")
    for passed, text in c["criteria"]:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    failed = sum(not passed for passed, _ in c["criteria"])
    total = len(c["criteria"])
    print(f"  overall: {'PASS' if not failed else f'FAIL ({failed} of {total} criteria)'}")


def print_comparison(configs: list[dict], repeat: int) -> None:
    first = configs[0]["name"]
    print(
        f"\n==================== comparison ({repeat} run{'s' * (repeat > 1)} per configuration"
        f"{', interleaved; medians' if repeat > 1 else ''})"
    )
    rows = [["config", "precision", "recall", "F1", "FP burst/tile/junk/other", "criteria"]]
    for c in configs:
        s = c["score"]
        fp = "/".join(str(s["fp_breakdown"].get(k, 0)) for k in ("burst", "tile", "junk", "other"))
        failed = sum(not passed for passed, _ in c["criteria"])
        rows.append(
            [
                c["name"],
                f"{s['precision']:.4f}",
                f"{s['recall']:.4f}",
                f"{s['f1']:.4f}",
                fp,
                "PASS" if not failed else f"FAIL {failed}",
            ]
        )
    print("\n".join(table(rows)))
    print("\n  recall per family")
    families = list(dict.fromkeys(k for c in configs for k in c["score"]["recall_per_family"]))
    rows = [["family", *(c["name"] for c in configs)]]
    for f in families:
        rows.append(
            [
                f,
                *(
                    f"{c['score']['recall_per_family'][f]['recall']:.3f}"
                    if f in c["score"]["recall_per_family"]
                    else "-"
                    for c in configs
                ),
            ]
        )
    print("\n".join(table(rows)))
    print()
    rows = [
        [
            "config",
            "wall s [min-max]",
            "files/s",
            "images/s [min-max]",
            "decode s",
            "keypoints s",
            "peak RSS MB",
            "descriptors B/image",
            f"images/s vs {first}",
        ]
    ]
    for c in configs:
        m, d = c["summary"], c["descriptors"]
        wall, ips = m["wall_s"], m["decoded_per_s"]
        desc = (
            f"{d['mean_bytes']:.0f} (<= {d['upper_bound_bytes']})"
            if d["computed"] and d["decoded"]
            else "0 (none)"
            if not d["computed"]
            else "-"
        )
        rows.append(
            [
                c["name"],
                f"{wall['median']:.2f} [{wall['min']:.2f}-{wall['max']:.2f}]",
                f"{m['files_per_s']['median']:.1f}",
                f"{ips['median']:.1f} [{ips['min']:.1f}-{ips['max']:.1f}]",
                f"{m['timings_s'].get('decode', 0):.2f}",
                f"{m['keypoints_s']['median']:.3f}",
                f"{m['peak_rss_mb']['max']:.0f}",
                desc,
                f"{m['decoded_per_s_ratio_to_first']:.2f}",
            ]
        )
    print("\n".join(table(rows)))
    print(
        f"  images/s vs {first}: median images/s of each configuration divided by that of {first}, both measured in"
        f" this one run ({'interleaved ' if repeat > 1 else ''}on the same files, one after another); compare"
        " ratios between runs, not absolute rates, on this shared machine."
    )
    print(
        "  decode s: the decode + features stage, which includes computing the ORB keypoints; keypoints s: the"
        " crop-matching stage. peak RSS: the largest single process, highest over the runs. descriptors:"
        " measured mean (and upper bound) of kp_desc + kp_xy bytes per decoded image."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--corpus",
        type=Path,
        metavar="DIR",
        help=f"folder with images/ and truth.json (default {CACHE}/dev, or the --build corpus there)",
    )
    ap.add_argument("--build", metavar="dev|scaleN", help="build the corpus with make_corpus.sh if it is missing")
    ap.add_argument(
        "--workers", type=int, default=0, metavar="N", help="decoding processes for the scan (default 0: one per core)"
    )
    ap.add_argument(
        "--configs",
        default="default",
        metavar="NAME[,NAME...]",
        help="configurations to measure, side by side: "
        + "; ".join(f"{k} = {v[1]}" for k, v in PRESETS.items())
        + " (default: default)",
    )
    ap.add_argument(
        "--set",
        type=parse_set,
        action="append",
        default=[],
        dest="sets",
        metavar="KEY=VALUE",
        help="override a Settings field in every configuration; VALUE is JSON, or else a string "
        "(repeatable), e.g. --set ssim_threshold=0.75",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="scan each configuration N times, interleaved (A B A B ...); speed is the median (default 1)",
    )
    ap.add_argument("--json", type=Path, dest="json_out", metavar="OUT", help="also write every measurement here")
    args = ap.parse_args()
    if args.build is not None and not re.fullmatch(r"dev|scale\d+", args.build):
        ap.error("--build takes dev or scaleN, e.g. scale1000")
    if args.json_out is not None and not args.json_out.expanduser().absolute().parent.is_dir():
        ap.error(f"folder for --json does not exist: {args.json_out.parent}")
    if args.repeat < 1:
        ap.error("--repeat must be 1 or more")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if not names or unknown:
        ap.error(f"unknown configuration {', '.join(unknown) or '(none given)'}; known: {', '.join(PRESETS)}")
    if len(set(names)) != len(names):
        ap.error(f"a configuration is named twice in --configs {args.configs}")
    corpus = (args.corpus or CACHE / (args.build or "dev")).expanduser().absolute()
    if args.build is not None and corpus.name != args.build:
        ap.error(f"--build {args.build} makes a folder named {args.build}; use --corpus {corpus.parent / args.build}")
    if not (corpus / "truth.json").is_file():
        if args.build is None:
            ap.error(f"no corpus at {corpus} (no truth.json); add --build dev or --build scaleN to build it")
        build(corpus, args.build)
    images = corpus / "images"
    truth = json.loads((corpus / "truth.json").read_text("utf-8"))
    sets = dict(args.sets)
    configs = [{"name": n, "about": PRESETS[n][1], "changed": {**PRESETS[n][0], **sets}} for n in names]
    for c in configs:  # --workers first, so that --set workers=N still wins
        c["overrides"] = {"workers": args.workers, **c["changed"]}
        c["changed"].pop("workers", None)

    with tempfile.TemporaryDirectory(prefix="dedupe-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for c in configs:  # builds each Settings first, so that a bad --set stops before any scan
            c.update(describe(images, c["overrides"], tmp))
        order = [c for _ in range(args.repeat) for c in configs]
        for k, c in enumerate(order):
            print(f"run_bench: scan {k + 1}/{len(order)}: {c['name']}", file=sys.stderr, flush=True)
            run_tmp = tmp / f"run{k + 1}"
            run_tmp.mkdir()
            report, measured = run_scan(images, c["overrides"], run_tmp)
            stats, wall = report["stats"], measured["wall_s"]
            run = {
                "run": len(c.setdefault("runs", [])) + 1,
                "order": k + 1,
                "wall_s": round(wall, 3),
                "files_per_s": round(stats["files_seen"] / wall, 2),
                "decoded_per_s": round(stats["images_decoded"] / wall, 2),
                "keypoints_s": stats["timings"].get("keypoints", 0.0),
                "peak_rss_mb": {
                    "largest_process": round(measured["rss_peak_bytes"] / 2**20, 1),
                    "scan_process": round(measured["rss_scan_bytes"] / 2**20, 1),
                },
                "stats": stats,
                "dedupe": measured["dedupe"],
            }
            if "score" not in c:
                c["score"] = score(corpus / "truth.json", report, run_tmp)
                c["groups"] = groups_of(report)
                c["junk_missing"] = missing_junk(truth, report, images)
                c["criteria"] = criteria(c["score"], c["junk_missing"])
                run["groups_same_as_first"] = True
            else:
                run["groups_same_as_first"] = groups_of(report) == c["groups"]
                if not run["groups_same_as_first"]:
                    run["score"] = score(corpus / "truth.json", report, run_tmp)
                    run["junk_missing"] = missing_junk(truth, report, images)
            c["runs"].append(run)

    for c in configs:
        runs = c["runs"]
        stages = list(dict.fromkeys(k for r in runs for k in r["stats"]["timings"]))
        c["summary"] = {
            "wall_s": spread([r["wall_s"] for r in runs]),
            "files_per_s": spread([r["files_per_s"] for r in runs]),
            "decoded_per_s": spread([r["decoded_per_s"] for r in runs]),
            "keypoints_s": spread([r["keypoints_s"] for r in runs]),
            "timings_s": {k: statistics.median(r["stats"]["timings"].get(k, 0.0) for r in runs) for k in stages},
            "peak_rss_mb": spread([r["peak_rss_mb"]["largest_process"] for r in runs]),
            "scan_rss_mb": spread([r["peak_rss_mb"]["scan_process"] for r in runs]),
        }
    base = configs[0]["summary"]["decoded_per_s"]["median"]
    for c in configs:
        c["summary"]["decoded_per_s_ratio_to_first"] = round(c["summary"]["decoded_per_s"]["median"] / base, 3)

    source = configs[0]["runs"][0]["dedupe"]
    seen: dict[str, set[str]] = {}  # module file -> its digests, at the start and end of every child
    for code in [c["code"] for c in configs] + [r["dedupe"]["code"] for c in configs for r in c["runs"]]:
        for when in ("before", "after"):
            for name, digest in code[when].items():
                seen.setdefault(name, set()).add(digest)
    changed = sorted(name for name, digests in seen.items() if len(digests) > 1)
    code_id = hashlib.sha256("".join(f"{k}:{sorted(v)}" for k, v in sorted(seen.items())).encode()).hexdigest()[:12]
    git = git_state(Path(source["path"]))
    workers = str(args.workers or f"0 (= {os.cpu_count()} cores)") if "workers" not in sets else str(sets["workers"])
    same_code = not changed
    warning = (
        "WARNING: dedupe changed during the benchmark, in "
        + ", ".join(changed)
        + ": the runs did not all measure the same code"
    )
    print(f"dedupe {source['version']} from {source['path']}" + (f" ({git} at the end)" if git else ""))
    print(
        f"  code digest {code_id}: the {len(seen)} modules the children imported, the same in every run"
        if same_code
        else f"  {warning}"
    )
    print(f"corpus: {corpus} ({len(truth['files'])} files in truth.json)")
    print("configurations: " + "; ".join(f"{c['name']} = {c['about']}" for c in configs))
    print(f"--set (every configuration): {overrides_text(sets)}")
    print(
        f"runs: {args.repeat} per configuration, one after another"
        + (
            ", interleaved: " + ", ".join(c["name"] for c in order[: 2 * len(configs)]) + ", ..."
            if args.repeat > 1 and len(configs) > 1
            else ""
        )
        + f"; workers={workers}"
    )
    for c in configs:
        print_config(c, truth, workers)
    print_comparison(configs, args.repeat)
    if not same_code:
        print(f"\n{warning}")

    if args.json_out is not None:
        args.json_out.write_text(
            json.dumps(
                {
                    "corpus": str(corpus),
                    "files_in_truth": len(truth["files"]),
                    "workers": args.workers,
                    "set": sets,
                    "repeat": args.repeat,
                    "order": [c["name"] for c in order],
                    "dedupe": {
                        "version": source["version"],
                        "path": source["path"],
                        "git": git,
                        "code_digest": code_id,
                        "modules": {k: sorted(v) for k, v in sorted(seen.items())},
                        "changed": changed,
                    },
                    "same_code_in_every_run": same_code,
                    "ratio_note": f"decoded_per_s_ratio_to_first: median images/s over that of {configs[0]['name']}, "
                    "measured in this one run",
                    "configs": [
                        {
                            "name": c["name"],
                            "about": c["about"],
                            "overrides": c["overrides"],
                            "settings": c["settings"],
                            "score": c["score"],
                            "junk_missing": c["junk_missing"],
                            "criteria": [{"passed": passed, "check": text} for passed, text in c["criteria"]],
                            "passed": all(passed for passed, _ in c["criteria"]),
                            "groups_same_in_every_run": all(r["groups_same_as_first"] for r in c["runs"]),
                            "descriptors": c["descriptors"],
                            "descriptors_code": c["code"],
                            "summary": c["summary"],
                            "runs": c["runs"],
                        }
                        for c in configs
                    ],
                },
                indent=1,
            )
            + "\n",
            "utf-8",
        )


if __name__ == "__main__":
    main()
