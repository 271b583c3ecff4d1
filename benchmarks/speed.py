"""Speed of `dedupe scan` side by side with the decode-only limit and two naive peers, on the same files, in one run.

Usage: python benchmarks/speed.py [--corpus DIR] [--dev DIR] [--workers N] [--skip-peer] [--skip-accuracy] [--out OUT]
                                 [--jobs A,B]

Jobs, each in a fresh process with the same number of worker processes:
  decode-only   every image file read and decoded the fastest way (a JPEG at 1/8 scale in the DCT domain, grayscale;
                other formats in full): the floor for any scan that looks at the pixels
  decode+keypoints  decode-only, then the scan's ORB keypoints of each decoded image (dedupe.features.keypoints):
                the floor for a scan that finds crops by keypoints, before any hash, search or check
  scan cold     `dedupe scan DIR --json R --workers N --cache C`, the cache file deleted first
  scan warm     the same command again, nothing changed
  cold no-crops the cold scan with --no-crops (no keypoints, no crop stage): what finding crops costs
  naive         `imagehash.phash(Image.open(path))` for every image file, in a plain multiprocessing pool
  imagededup    `PHash().find_duplicates(image_dir=DIR, recursive=True, max_distance_threshold=10)`, own venv
The jobs run on the whole corpus, then (all but the warm scan) on a tree of hard links to its files of 8 MP and more,
where decoding in full costs most. Then the scan, naive and imagededup are scored on the dev corpus by the kit's
score.py (naive: files whose pHashes are within 10 bits, imagededup's default for PHash, grouped as connected
components).

Times are wall times of each job's process, from start to exit, interpreter start and imports included: what a person
waits for. "work s" is the time inside the job without them (the scan's own stats.timings.total; the pool's start to
end; the find_duplicates call). images/s divides the same count, the image files found by dedupe's walk, by each
job's wall time. Peak RSS is polled from /proc every 50 ms (psutil is not a dependency): the highest sum over the job's
process and all its descendants (pages shared between processes count once in each), and the largest single process
(ru_maxrss, exact). The standard library only, here; the jobs import what they measure.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import run_bench

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path.home() / ".cache" / "dedupe-bench"
PEER_PINS = ("torch==2.13.0",)
"""The CPU build of torch, which pip takes from local disk here; pinned again when imagededup is installed, or its
newest torchvision would pull a newer torch with several GB of CUDA packages."""
PHASH_RADIUS = 10
"""imagededup's default max_distance_threshold for PHash; the naive job groups with it too."""
RSS_POLL_S = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20
TARGETS = {"decode": 1.3, "peers": 2.0, "peers_large": 3.5, "warm": 30.0, "rss_mb": 500}
"""The issue's targets: cold scan <= 1.3 x decode-only; >= 2x (3.5x on the large files) faster than naive and
imagededup; warm rescan >= 30x faster than cold; peak RSS (the sum) <= 500 MB."""


# ---- jobs, each run in a fresh interpreter as `speed.<job>(*args)` ----


def _pillow_setup() -> None:
    import warnings

    warnings.simplefilter("ignore")  # decompression-bomb and truncated-file warnings from the corpus's junk
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass


def _decoded(path: str):
    """The file's bytes read (a scan must, to hash them) and opened as fast as Pillow decodes: a JPEG drafted
    at 1/8 scale in the DCT domain, grayscale; other formats in full. Not loaded yet."""
    import io

    from PIL import Image

    with open(path, "rb") as fh:
        im = Image.open(io.BytesIO(fh.read()))
    if im.format == "JPEG":
        im.draft("L", (im.width // 8, im.height // 8))
    return im


def _decode_one(path: str) -> bool:
    try:
        _decoded(path).load()
        return True
    except Exception:  # a broken file is a failed decode here, as in the scan
        return False


def _keypoints_one(path: str) -> bool:
    """_decode_one, then the keypoints the scan computes for every picture, on the decoded image."""
    import numpy as np

    from dedupe.features.keypoints import keypoints

    try:
        gray = np.asarray(_decoded(path).convert("L"))
    except Exception:
        return False
    keypoints(gray, 1.0)
    return True


def _keypoints_setup() -> None:
    import cv2

    _pillow_setup()
    cv2.setNumThreads(1)


def _phash_one(path: str) -> tuple[str, str | None]:
    import imagehash
    from PIL import Image

    try:
        with Image.open(path) as im:
            return path, str(imagehash.phash(im))
    except Exception:
        return path, None


def decode_job(files: str, workers: str, keypoints: str, out: str) -> None:
    """Decode-only (with `keypoints` "1", the scan's keypoints of each image too, OpenCV on one thread per
    process as in the scan's workers): a plain multiprocessing pool (the platform's default start method,
    as a naive tool gets)."""
    import multiprocessing

    paths = json.loads(Path(files).read_text("utf-8"))
    one, setup = (_keypoints_one, _keypoints_setup) if keypoints == "1" else (_decode_one, _pillow_setup)
    started = time.perf_counter()
    with multiprocessing.Pool(int(workers), initializer=setup) as pool:
        ok = sum(pool.imap_unordered(one, paths, chunksize=4))
    Path(out).write_text(json.dumps({"work_s": time.perf_counter() - started, "files": ok}), "utf-8")


def naive_job(files: str, workers: str, out: str) -> None:
    """imagehash's pHash of each file opened by Pillow, in a plain multiprocessing pool."""
    import multiprocessing

    _pillow_setup()  # before the pool, so that forked workers read HEIC too
    paths = json.loads(Path(files).read_text("utf-8"))
    started = time.perf_counter()
    with multiprocessing.Pool(int(workers)) as pool:
        hashes = {p: h for p, h in pool.imap_unordered(_phash_one, paths, chunksize=4) if h is not None}
    work = time.perf_counter() - started
    Path(out).write_text(json.dumps({"work_s": work, "files": len(hashes), "hashes": hashes}), "utf-8")


def _stub_torchvision() -> None:
    """imagededup imports torchvision when it is imported, for its CNN method only. The torchvision wheels served here
    are CUDA builds that cannot load against the CPU torch (their ops need libtorch_cuda), so a stand-in that accepts
    any use takes its place; PHash never touches it."""
    import types

    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Stub(f"{self.__name__}.{name}")

        def __call__(self, *args, **kwargs):
            return self

    for name in (
        "torchvision",
        "torchvision.models",
        "torchvision.models.vision_transformer",
        "torchvision.transforms",
    ):
        sys.modules[name] = Stub(name)


def peer_job(images: str, workers: str, out: str) -> None:
    """Runs in the peer venv: imagededup's PHash over the folder and its subfolders."""
    _stub_torchvision()
    from imagededup.methods import PHash

    started = time.perf_counter()
    found = PHash(verbose=False).find_duplicates(
        image_dir=images,
        recursive=True,
        max_distance_threshold=PHASH_RADIUS,
        num_enc_workers=int(workers),
        num_dist_workers=int(workers),
    )
    work = time.perf_counter() - started
    Path(out).write_text(json.dumps({"work_s": work, "files": len(found), "duplicates": found}), "utf-8")


# ---- in the parent ----


def _tree_rss(pid: int) -> list[int]:
    """RSS in bytes of the process and each of its descendants."""
    sizes, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                sizes.append(int(fh.read().split()[1]) * PAGE)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += map(int, fh.read().split())
        except (OSError, ValueError):  # it ended meanwhile
            continue
    return sizes


def measure(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run one job: wall time, peak RSS (sum over its process tree, largest process), exit status. Its output goes to
    `log`, whose end is printed when it fails."""
    with open(log, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=log.parent, env=env)
    peak = {"sum": 0, "largest": 0}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            sizes = _tree_rss(proc.pid)
            peak["sum"] = max(peak["sum"], sum(sizes))
            peak["largest"] = max(peak["largest"], max(sizes, default=0))
            done.wait(RSS_POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: the largest of the process and the descendants it reaped
    wall = time.perf_counter() - started
    done.set()
    poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text("utf-8", "replace").splitlines()[-15:]
        print(f"speed: {' '.join(cmd[:4])} ... failed (exit {proc.returncode}):", *tail, sep="\n  ", file=sys.stderr)
    return {
        "ok": proc.returncode == 0,
        "wall_s": round(wall, 3),
        "rss_sum_mb": round(peak["sum"] / MB, 1),
        "rss_largest_mb": round(max(peak["largest"], usage.ru_maxrss * 1024) / MB, 1),
    }


def python_job(python: str, function: str, args: list, tmp: Path) -> dict:
    """measure() `speed.<function>(*args, out)` in a fresh `python`, with what the job wrote to `out`."""
    out = tmp / f"{function}.json"
    out.unlink(missing_ok=True)
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import speed; speed.{function}(*sys.argv[1:])"
    got = measure([python, "-c", code, *map(str, args), str(out)], tmp / f"{function}.log")
    if got["ok"]:
        got.update(json.loads(out.read_text("utf-8")))
    return got


class Scanner:
    """`dedupe scan` through the CLI, as a person runs it, with its own cache file (when the CLI has --cache)."""

    def __init__(self, workers: int, tmp: Path) -> None:
        self.workers, self.tmp = workers, tmp
        self.env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(REPO)}
        self.cmd = [sys.executable, "-m", "dedupe", "scan"]
        # Bytecode, as pip writes it when it installs a package (the peers' have theirs): a checkout under
        # PYTHONDONTWRITEBYTECODE compiles its 24 modules in every run, 0.1 s of each scan's start-up.
        package = subprocess.run(
            [sys.executable, "-c", "import dedupe, os; print(os.path.dirname(dedupe.__file__))"],
            capture_output=True, text=True, env=self.env, cwd=tmp,
        ).stdout.strip()
        if package:
            compileall.compile_dir(package, quiet=1)
        help_text = subprocess.run([*self.cmd, "--help"], capture_output=True, text=True, env=self.env, cwd=tmp)
        self.has_cache = re.search(r"--cache\b", help_text.stdout) is not None
        if not self.has_cache:
            print("speed: WARNING: `dedupe scan` has no --cache option yet: the warm scan is another cold scan")

    def run(self, images: Path, cache: Path, cold: bool, extra: tuple[str, ...] = ()) -> dict:
        report = self.tmp / "report.json"
        report.unlink(missing_ok=True)
        if cold:
            cache.unlink(missing_ok=True)
        cmd = [*self.cmd, str(images), "--json", str(report), "--workers", str(self.workers), "--quiet", *extra]
        got = measure(cmd + ["--cache", str(cache)] * self.has_cache, self.tmp / "scan.log", self.env)
        if got["ok"]:
            data = json.loads(report.read_text("utf-8"))
            stats = data["stats"]
            got.update(
                work_s=stats["timings"]["total"],
                files=stats["images_decoded"] + stats.get("exact_copies", 0),
                timings=stats["timings"],
                report=data,
            )
        return got


def _pip(venv: Path, *args: str) -> None:
    """pip install, after a dry run that refuses any CUDA package (nvidia-*): they would weigh several GB."""
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    report = venv / "dry-run.json"
    subprocess.run([*pip, "--dry-run", "--report", str(report), *args], check=True, stderr=subprocess.DEVNULL)
    names = [p["metadata"]["name"] for p in json.loads(report.read_text("utf-8"))["install"]]
    cuda = [n for n in names if n.lower().startswith("nvidia")]
    if cuda:
        sys.exit(f"speed: pip install {' '.join(args)} would pull CUDA packages ({', '.join(cuda)}); stopped")
    subprocess.run([*pip, *args], check=True, stderr=subprocess.DEVNULL)


def peer_python(venv: Path) -> str:
    """The python of a venv holding imagededup and the CPU build of torch, created and filled the first time."""
    python = venv / "bin" / "python"
    if not (venv / "ready").is_file():
        print(f"speed: installing imagededup and the CPU torch into {venv} (once; about a minute) ...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip(venv, *PEER_PINS)
        _pip(venv, "imagededup", *PEER_PINS)
        (venv / "ready").touch()
    return str(python)


def image_files(images: Path) -> list[tuple[str, int]]:
    """(path, pixels) of every image file the scan would read: found by dedupe's walk (sniffed by content, no
    symlinks, each inode once), pixels from the header (0 when Pillow cannot open it)."""
    import warnings

    from PIL import Image

    from dedupe import Settings
    from dedupe.walk import walk

    warnings.simplefilter("ignore")
    out = []
    for f in walk([images], Settings()).files:
        try:
            with Image.open(f.path) as im:
                out.append((f.path, im.width * im.height))
        except Exception:
            out.append((f.path, 0))
    return out


def link_tree(files: list[str], images: Path, dest: Path) -> None:
    """`dest` mirrors `images` with only `files`, as hard links (copies across file systems): the scan does not
    follow symbolic links."""
    for f in files:
        target = dest / Path(f).relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def warm_page_cache(files: list[str]) -> None:
    """Read every file once, so that the first job does not pay for the disk and the others for nothing."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 22):
                pass


JOBS = ("decode-only", "decode+keypoints", "scan cold", "scan warm", "cold no-crops", "naive", "imagededup")
ONLY: set[str] = set()
"""The jobs this run measures (--jobs)."""


def run_jobs(
    names: tuple[str, ...],
    images: Path,
    files: list[str],
    workers: int,
    scanner: Scanner,
    peer: str | None,
    tmp: Path,
    repeat: int = 1,
) -> dict:
    """The named jobs on the same files, one after another, in that order; `repeat` rounds of them, each
    job then reported by its run of median wall time (with the median work time)."""
    listing = tmp / "files.json"
    listing.write_text(json.dumps(files), "utf-8")
    cache = tmp / "features.sqlite"
    run = {
        "decode-only": lambda: python_job(sys.executable, "decode_job", [listing, workers, 0], tmp),
        "decode+keypoints": lambda: python_job(sys.executable, "decode_job", [listing, workers, 1], tmp),
        "scan cold": lambda: scanner.run(images, cache, cold=True),
        "scan warm": lambda: scanner.run(images, cache, cold=False),
        "cold no-crops": lambda: scanner.run(images, tmp / "no-crops.sqlite", cold=True, extra=("--no-crops",)),
        "naive": lambda: python_job(sys.executable, "naive_job", [listing, workers], tmp),
        "imagededup": lambda: python_job(peer, "peer_job", [images, workers], tmp),
    }
    runs: dict[str, list[dict]] = {}
    for _ in range(repeat):
        for name in names:
            if (name == "imagededup" and peer is None) or name not in ONLY:
                continue
            print(f"  {name} ...", end=" ", flush=True)
            got = run[name]()
            runs.setdefault(name, []).append(got)
            print(f"{got['wall_s']:.1f} s" if got["ok"] else "FAILED", flush=True)
    jobs = {}
    for name, tries in runs.items():
        ok = sorted((t for t in tries if t["ok"]), key=lambda t: t["wall_s"])
        if not ok:
            jobs[name] = tries[0]
            continue
        jobs[name] = dict(ok[len(ok) // 2])
        if len(ok) > 1:
            works = sorted(t["work_s"] for t in ok if t.get("work_s") is not None)
            jobs[name]["work_s"] = works[len(works) // 2] if works else None
            jobs[name]["walls"] = [round(t["wall_s"], 2) for t in tries]
    return jobs


def components(edges: list[tuple[str, str]]) -> list[list[str]]:
    """The graph's connected components (union-find)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = x = parent[parent[x]]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return list(groups.values())


def predicted(name: str, job: dict) -> dict:
    """A job's groups in the shape of a dedupe report, which run_bench.score converts for score.py: the scan's own
    report; naive pHashes within PHASH_RADIUS bits and imagededup's duplicate lists grouped as connected components."""
    if name == "scan cold":
        return job["report"]
    if name == "naive":
        codes = [(p, int(h, 16)) for p, h in job["hashes"].items()]
        edges = [
            (a, b) for i, (a, x) in enumerate(codes) for b, y in codes[i + 1 :] if (x ^ y).bit_count() <= PHASH_RADIUS
        ]
    else:
        edges = [(a, b) for a, found in job["duplicates"].items() for b in found]
    return {"groups": [{"members": [{"path": p} for p in group]} for group in components(edges)]}


def accuracy(dev: Path, workers: int, scanner: Scanner, peer: str | None, tmp: Path) -> dict:
    """score.py's verdict on the dev corpus for the scan, naive and imagededup."""
    images = dev / "images"
    files = [p for p, _ in image_files(images)]
    jobs = run_jobs(("scan cold", "naive", "imagededup"), images, files, workers, scanner, peer, tmp)
    return {
        name: run_bench.score(dev / "truth.json", predicted(name, job), tmp) for name, job in jobs.items() if job["ok"]
    }


def print_jobs(title: str, jobs: dict, n: int) -> None:
    cold = jobs["scan cold"]["wall_s"] if jobs["scan cold"]["ok"] else None
    rows = [["job", "files", "wall s", "work s", "images/s", "time vs cold", "RSS sum MB", "largest MB"]]
    for name, j in jobs.items():
        if not j["ok"]:
            rows.append([name, "failed", *[""] * 6])
            continue
        rows.append(
            [
                name,
                str(j["files"]),
                f"{j['wall_s']:.2f}",
                f"{j['work_s']:.2f}",
                f"{n / j['wall_s']:.1f}",
                f"{j['wall_s'] / cold:.2f}x" if cold else "-",
                f"{j['rss_sum_mb']:.0f}",
                f"{j['rss_largest_mb']:.0f}",
            ]
        )
    print(f"\n{title}")
    print("\n".join(run_bench.table(rows)))
    for name in ("scan cold", "scan warm", "cold no-crops"):
        if jobs.get(name, {}).get("ok"):
            timings = ", ".join(f"{k} {v:.2f}" for k, v in jobs[name]["timings"].items())
            print(f"  {name} stages (s): {timings}")
    repeated = [f"{name} {', '.join(map(str, j['walls']))}" for name, j in jobs.items() if "walls" in j]
    if repeated:
        print(f"  rounds (wall s; the median is shown above): {'; '.join(repeated)}")


def floor(jobs: dict) -> float | None:
    """decode+keypoints / decode-only wall time: the share of the decode target that keypoints for every picture
    take before anything else a scan does."""
    base, kp = jobs.get("decode-only"), jobs.get("decode+keypoints")
    return kp["wall_s"] / base["wall_s"] if base and kp and base["ok"] and kp["ok"] else None


def targets(full: dict, large: dict) -> list[tuple[bool, str]]:
    """(passed, text) for each target of the issue that was measured, on wall times (work times in brackets)."""
    out = []

    def check(jobs: dict, name: str, limit: float, cold_first: bool, at_most: bool, where: str = "") -> None:
        cold, job = jobs.get("scan cold"), jobs.get(name)
        if not (cold and job and cold["ok"] and job["ok"]):
            return
        wall, work = (cold[k] / job[k] if cold_first else job[k] / cold[k] for k in ("wall_s", "work_s"))
        what = f"cold scan / {name}" if cold_first else f"{name} / cold scan"
        passed = wall <= limit if at_most else wall >= limit
        out.append((passed, f"{what} {'<=' if at_most else '>='} {limit:g}{where}: {wall:.2f} (work {work:.2f})"))

    check(full, "decode-only", TARGETS["decode"], cold_first=True, at_most=True)
    for peer in ("naive", "imagededup"):
        check(full, peer, TARGETS["peers"], cold_first=False, at_most=False)
        check(large, peer, TARGETS["peers_large"], cold_first=False, at_most=False, where=" on the large files")
    check(full, "scan warm", TARGETS["warm"], cold_first=True, at_most=False)
    scans = [j for jobs in (full, large) for k, j in jobs.items() if k.startswith("scan") and j["ok"]]
    if scans:
        rss = max(j["rss_sum_mb"] for j in scans)
        out.append(
            (rss <= TARGETS["rss_mb"], f"scan peak RSS (sum over processes) <= {TARGETS['rss_mb']} MB: {rss:.0f}")
        )
    return out


def print_accuracy(scores: dict) -> None:
    rows = [["job", "precision", "recall", "F1", "groups", "FP pairs burst/tile/junk/other"]]
    for name, s in scores.items():
        fp = "/".join(str(s["fp_breakdown"].get(k, 0)) for k in ("burst", "tile", "junk", "other"))
        rows.append([name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["pred_groups"]), fp])
    print("\naccuracy on the dev corpus (score.py, pairwise)")
    print("\n".join(run_bench.table(rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CACHE / "scale5000", metavar="DIR", help="folder with images/")
    ap.add_argument("--dev", type=Path, default=CACHE / "dev", metavar="DIR", help="dev corpus for the accuracy")
    ap.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes of every job (default 2)")
    ap.add_argument("--min-megapixels", type=float, default=8.0, metavar="MP", help="the large files (default 8)")
    ap.add_argument(
        "--large-repeat", type=int, default=3, metavar="N", help="rounds of the large files' jobs, medians (default 3)"
    )
    ap.add_argument("--peer-venv", type=Path, default=CACHE / "peer-venv", metavar="DIR", help="imagededup's venv")
    ap.add_argument("--skip-peer", action="store_true", help="do not run imagededup")
    ap.add_argument("--skip-accuracy", action="store_true", help="do not score on the dev corpus")
    ap.add_argument("--out", type=Path, metavar="OUT", help="also write the numbers here (JSON)")
    ap.add_argument("--jobs", metavar="A,B", help=f"only these jobs (of {', '.join(JOBS)}); scan cold is always run")
    args = ap.parse_args()
    ONLY.update(JOBS if not args.jobs else {"scan cold", *(j.strip() for j in args.jobs.split(","))})
    images = args.corpus.expanduser().absolute() / "images"
    dev = args.dev.expanduser().absolute()
    if not images.is_dir():
        ap.error(f"no corpus at {args.corpus} (no images/): build it with ../shared/bench/make_corpus.sh")
    if not args.skip_accuracy and not (dev / "truth.json").is_file():
        ap.error(f"no dev corpus at {dev} (no truth.json); or --skip-accuracy")
    if args.out is not None and not args.out.expanduser().absolute().parent.is_dir():
        ap.error(f"folder for --out does not exist: {args.out.parent}")
    if not os.environ.get("PYTHONPATH"):
        sys.path.insert(0, str(REPO))  # the walk and the scans use this checkout's dedupe unless PYTHONPATH names one
    import dedupe

    peer = None if args.skip_peer else peer_python(args.peer_venv.expanduser().absolute())
    found = image_files(images)
    files = [p for p, _ in found]
    large = [p for p, pixels in found if pixels >= args.min_megapixels * 1e6]
    if not files:
        ap.error(f"no image files under {images}")
    pixels = sorted(px for _, px in found)
    print(f"dedupe {dedupe.__version__} from {Path(dedupe.__file__).parent} ({run_bench.git_state(REPO) or 'no git'})")
    print(
        f"corpus: {images}: {len(files)} image files, median {pixels[len(pixels) // 2] / 1e6:.1f} MP; "
        f"{len(large)} of {args.min_megapixels:g} MP and more; workers={args.workers} on {os.cpu_count()} cores"
    )
    warm_page_cache(files)
    result: dict = {"corpus": str(images), "workers": args.workers, "files": len(files), "large_files": len(large)}
    with tempfile.TemporaryDirectory(prefix="dedupe-speed-") as tmpdir:
        tmp = Path(tmpdir)
        scanner = Scanner(args.workers, tmp)
        result["cache_option"] = scanner.has_cache
        print("whole corpus:")
        full = run_jobs(
            ("decode-only", "decode+keypoints", "scan cold", "scan warm", "cold no-crops", "naive", "imagededup"),
            images,
            files,
            args.workers,
            scanner,
            peer,
            tmp,
        )
        big = {}
        if large:  # next to images/, on the same file system, so that hard links work
            with tempfile.TemporaryDirectory(prefix="speed-large-", dir=images.parent) as subset:
                link_tree(large, images, Path(subset))
                print(f"files of {args.min_megapixels:g} MP and more (hard links in {subset}):")
                big = run_jobs(
                    ("decode-only", "decode+keypoints", "scan cold", "cold no-crops", "naive", "imagededup"),
                    Path(subset),
                    large,
                    args.workers,
                    scanner,
                    peer,
                    tmp,
                    args.large_repeat,
                )
        if not args.skip_accuracy:
            print(f"dev corpus {dev}:")
            result["accuracy"] = accuracy(dev, args.workers, scanner, peer, tmp)

    print_jobs(f"whole corpus: {len(files)} image files", full, len(files))
    if big:
        print_jobs(f"files of {args.min_megapixels:g} MP and more: {len(large)}", big, len(large))
    print(
        "  wall s: the job's process, start to exit; work s: without interpreter start and imports; images/s: image"
        " files / wall s; time vs cold: wall s / the cold scan's; RSS sum: the peak of the sum over the job's"
        " processes; largest: the largest single process"
    )
    result["targets"] = targets(full, big)
    print(f"\ntargets (workers={args.workers}; wall times, work times in brackets)")
    for passed, text in result["targets"]:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    floors = [(where, floor(jobs)) for where, jobs in (("whole corpus", full), ("large files", big))]
    result["keypoints_floor"] = {where: ratio for where, ratio in floors if ratio is not None}
    for where, ratio in floors:
        if ratio is not None:
            print(f"  decode+keypoints / decode-only, {where}: {ratio:.2f} (the scan may take {TARGETS['decode']:g})")
    if "accuracy" in result:
        print_accuracy(result["accuracy"])
    if args.out is not None:
        keep = ("ok", "wall_s", "work_s", "files", "rss_sum_mb", "rss_largest_mb", "timings", "walls")
        result["jobs"] = {k: {f: j[f] for f in keep if f in j} for k, j in full.items()}
        result["large_jobs"] = {k: {f: j[f] for f in keep if f in j} for k, j in big.items()}
        result["targets"] = [{"passed": p, "check": t} for p, t in result["targets"]]
        args.out.write_text(json.dumps(result, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
