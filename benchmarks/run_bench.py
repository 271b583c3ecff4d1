"""Measure `dedupe.scan` on a benchmark corpus from ../shared/bench: accuracy, junk handling, speed, memory.

Usage: python benchmarks/run_bench.py [--corpus DIR] [--build dev|scaleN] [--workers N] [--json OUT]

The scan runs through the library API in a fresh child process, so that its peak memory can be measured on
its own: os.wait4 returns the child's resource usage, whose ru_maxrss is that of the largest single process
among the scan process and the decode workers it waited for (not their sum). The report's groups are converted
to the scorer's format and scored by the kit's score.py. The pass/fail criteria are printed, but the exit status
is 0 whatever they say: this script measures. It exits non-zero only when it cannot measure: bad usage or no
corpus (2), a failed build, scan or scoring (1). Standard library only; the child imports dedupe.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KIT = HERE.parent.parent / "shared" / "bench"
CACHE = Path.home() / ".cache" / "dedupe-bench"

MIN_PRECISION = 0.99
MIN_RECALL = 0.95
RECALL_EXEMPT = ("rotate", "crop", "mirror")
"""Families the detector may treat as different photos (visible rotation, crops, mirror images)."""
ZERO_FP = ("burst", "tile", "junk")
FP_CATEGORIES = ("burst", "tile", "junk", "other", "unknown")
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
"""ru_maxrss is in bytes on macOS and in KiB on Linux."""


def child(images: str, report: str, workers: str, measured: str) -> None:
    """Runs in the child: scan with default settings (no user config file, so runs compare), write report and times."""
    import dedupe

    started = time.perf_counter()
    result = dedupe.scan([images], dedupe.Settings(workers=int(workers)))
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT
    dedupe.write_report(result, report)
    source = {"version": dedupe.__version__, "path": str(Path(dedupe.__file__).parent)}
    Path(measured).write_text(json.dumps({"wall_s": wall, "rss_scan_bytes": rss, "dedupe": source}), "utf-8")


def build(corpus: Path, name: str) -> None:
    """Build the corpus with the kit's make_corpus.sh (venv, sources, corpus; each step skipped when done)."""
    m = re.fullmatch(r"scale(\d+)", name)
    profile = ["scale", m.group(1)] if m else ["dev"]
    print(f"building {corpus} with {KIT / 'make_corpus.sh'} ...", flush=True)
    done = subprocess.run(["bash", str(KIT / "make_corpus.sh"), str(corpus.parent), *profile])
    if done.returncode != 0 or not (corpus / "truth.json").is_file():
        sys.exit(f"run_bench: building {corpus} failed (exit {done.returncode})")


def run_scan(images: Path, workers: int, tmp: Path) -> tuple[dict, dict]:
    """The scan's JSON report and the measurements: wall time, the scan process's and the whole tree's peak RSS."""
    report, measured = tmp / "report.json", tmp / "measured.json"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import run_bench; run_bench.child(*sys.argv[1:])"
    # cwd=tmp: `-c` puts the working directory first on sys.path, and a checkout there would shadow the dedupe
    # that is installed or on PYTHONPATH
    argv = [sys.executable, "-c", code, str(images), str(report), str(workers), str(measured)]
    proc = subprocess.Popen(argv, cwd=tmp)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's usage alone, not the build's or score.py's
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"run_bench: the scan failed (exit {proc.returncode})", file=sys.stderr)
        sys.exit(1)
    out = json.loads(measured.read_text("utf-8"))
    out["rss_peak_bytes"] = usage.ru_maxrss * RSS_UNIT
    return json.loads(report.read_text("utf-8")), out


def score(truth: Path, report: dict, tmp: Path) -> dict:
    """score.py's verdict on the report's groups, converted to its PRED format."""
    pred = tmp / "pred.json"
    pred.write_text(json.dumps({"groups": [[m["path"] for m in g["members"]] for g in report["groups"]]}), "utf-8")
    done = subprocess.run([sys.executable, str(KIT / "score.py"), str(truth), str(pred), "--json"],
                          capture_output=True, text=True)
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
    low = {k: v["recall"] for k, v in s["recall_per_family"].items()
           if k not in RECALL_EXEMPT and v["recall"] < MIN_RECALL}
    return [
        (s["precision"] >= MIN_PRECISION, f"precision >= {MIN_PRECISION}: {s['precision']:.4f}"),
        (not any(fp.get(k, 0) for k in ZERO_FP),
         "no false positives on " + "/".join(ZERO_FP) + ": " + ", ".join(f"{k} {fp.get(k, 0)}" for k in ZERO_FP)),
        (not low, f"recall >= {MIN_RECALL} for every family except {', '.join(RECALL_EXEMPT)}: "
                  + (", ".join(f"{k} {v:.3f}" for k, v in low.items()) if low else "all met")),
        (not missing, f"every junk file reported as a problem: {len(missing)} missing"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, metavar="DIR",
                    help=f"folder with images/ and truth.json (default {CACHE}/dev, or the --build corpus there)")
    ap.add_argument("--build", metavar="dev|scaleN", help="build the corpus with make_corpus.sh if it is missing")
    ap.add_argument("--workers", type=int, default=0, metavar="N",
                    help="decoding processes for the scan (default 0: one per core)")
    ap.add_argument("--json", type=Path, dest="json_out", metavar="OUT", help="also write every measurement here")
    args = ap.parse_args()
    if args.build is not None and not re.fullmatch(r"dev|scale\d+", args.build):
        ap.error("--build takes dev or scaleN, e.g. scale1000")
    if args.json_out is not None and not args.json_out.expanduser().absolute().parent.is_dir():
        ap.error(f"folder for --json does not exist: {args.json_out.parent}")
    corpus = (args.corpus or CACHE / (args.build or "dev")).expanduser().absolute()
    if args.build is not None and corpus.name != args.build:
        ap.error(f"--build {args.build} makes a folder named {args.build}; use --corpus {corpus.parent / args.build}")
    if not (corpus / "truth.json").is_file():
        if args.build is None:
            ap.error(f"no corpus at {corpus} (no truth.json); add --build dev or --build scaleN to build it")
        build(corpus, args.build)
    images = corpus / "images"
    truth = json.loads((corpus / "truth.json").read_text("utf-8"))

    with tempfile.TemporaryDirectory(prefix="dedupe-bench-") as tmp:
        report, measured = run_scan(images, args.workers, Path(tmp))
        s = score(corpus / "truth.json", report, Path(tmp))
    missing = missing_junk(truth, report, images)
    stats, wall = report["stats"], measured["wall_s"]
    rss_scan, rss_peak = measured["rss_scan_bytes"] / 2**20, measured["rss_peak_bytes"] / 2**20
    checks = criteria(s, missing)

    print(f"dedupe {measured['dedupe']['version']} from {measured['dedupe']['path']}")
    print(f"corpus: {corpus} ({len(truth['files'])} files in truth.json)")
    print(f"scan: workers={args.workers or f'0 (= {os.cpu_count()} cores)'}, wall {wall:.2f} s")
    print("\naccuracy (score.py)")
    print(f"  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    print(f"  pairs: true {s['true_pairs']}, predicted {s['pred_pairs']}, TP {s['tp_pairs']}, "
          f"FP {s['fp_pairs']}, FN {s['fn_pairs']}")
    print(f"  groups: true {s['true_groups']}, predicted {s['pred_groups']}, reproduced exactly {s['groups_exact']}")
    for title, table in (("family", s["recall_per_family"]), ("kind", s["recall_per_kind"])):
        print(f"  recall per {title}:")
        for k, v in table.items():
            print(f"    {k:18s} {v['found']:5d}/{v['total']:<5d} {v['recall']:.3f}")
    print("  false positive pairs: "
          + ", ".join(f"{k} {s['fp_breakdown'].get(k, 0)}" for k in FP_CATEGORIES))
    for k, pairs in s["fp_examples"].items():
        for a, b in pairs:
            print(f"    {k}: {a}  <->  {b}")
    junk = truth["junk"]
    print(f"\njunk: {len(junk) - len(missing)} of {len(junk)} junk files are in the report's problems")
    for j in missing:
        print(f"  missing: {j['path']} ({j['why']})")
    print("\nspeed")
    print(f"  files seen {stats['files_seen']}: {stats['files_seen'] / wall:.1f} files/s (scan wall time)")
    decode_s = stats["timings"].get("decode")
    print(f"  images decoded {stats['images_decoded']}: {stats['images_decoded'] / wall:.1f} images/s (scan wall time)"
          + (f", {stats['images_decoded'] / decode_s:.1f}/s in the decode stage alone" if decode_s else ""))
    print("  stage timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stats["timings"].items()))
    print("\nmemory")
    print(f"  peak RSS {rss_peak:.0f} MB: the largest single process, scan or decode worker "
          f"(the scan process alone: {rss_scan:.0f} MB; 1 MB = 2^20 bytes)")
    print("\ncriteria")
    for passed, text in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    failed = sum(not passed for passed, _ in checks)
    print(f"  overall: {'PASS' if not failed else f'FAIL ({failed} of {len(checks)} criteria)'}")

    if args.json_out is not None:
        args.json_out.write_text(json.dumps({
            "corpus": str(corpus),
            "workers": args.workers,
            "dedupe": measured["dedupe"],
            "score": s,
            "junk_missing": missing,
            "stats": stats,
            "wall_s": round(wall, 3),
            "files_per_s": round(stats["files_seen"] / wall, 2),
            "decoded_per_s": round(stats["images_decoded"] / wall, 2),
            "peak_rss_mb": {"largest_process": round(rss_peak, 1), "scan_process": round(rss_scan, 1)},
            "criteria": [{"passed": passed, "check": text} for passed, text in checks],
            "passed": not failed,
        }, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
