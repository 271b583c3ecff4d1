"""The per-file analysis of the pipeline: one read gives the content hash, the decode and the features."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dedupe import read as pipeline
from dedupe.exact import content_hash_file
from dedupe.model import Problem
from images import border, encode, photo


@pytest.fixture
def files(tmp_path):
    pic = photo(51, (400, 300))
    paths = {
        "plain": tmp_path / "plain.jpg",
        "framed": tmp_path / "framed.png",
        "broken": tmp_path / "broken.jpg",
    }
    paths["plain"].write_bytes(encode(pic))
    paths["framed"].write_bytes(encode(border(pic, 0.05), "PNG"))
    data = encode(pic)
    paths["broken"].write_bytes(data[: len(data) // 2])
    return {k: str(v) for k, v in paths.items()}


def test_analyse(files):
    a = pipeline.analyse(files["plain"], 10**9)
    assert not isinstance(a, Problem)
    assert a.content_hash == content_hash_file(files["plain"])
    assert (a.info.width, a.info.height) == (400, 300)
    assert a.info.content_pixels == 400 * 300
    assert a.features.box is None


def test_analyse_framed_counts_content_pixels_only(files):
    a = pipeline.analyse(files["framed"], 10**9)
    assert a.features.box is not None
    w, h = a.info.width, a.info.height
    assert (w, h) == (440, 330)
    assert a.info.content_pixels == pytest.approx(400 * 300, rel=0.03)
    assert a.info.content_pixels < w * h


def test_analyse_problem(files):
    p = pipeline.analyse(files["broken"], 10**9)
    assert isinstance(p, Problem) and p.stage == "decode" and "truncated" in p.reason


def test_analyse_missing_file(tmp_path):
    p = pipeline.analyse(str(tmp_path / "gone.jpg"), 10**9)
    assert isinstance(p, Problem) and "cannot read" in p.reason


def test_large_files_are_streamed_with_the_same_result(files, monkeypatch):
    """Above IN_MEMORY_LIMIT a file is hashed by streaming and decoded from disk: same hash, same features."""
    in_memory = {k: pipeline.analyse(v, 10**9) for k, v in files.items()}
    monkeypatch.setattr(pipeline, "IN_MEMORY_LIMIT", 0)
    streamed = {k: pipeline.analyse(v, 10**9) for k, v in files.items()}
    for k in ("plain", "framed"):
        a, b = in_memory[k], streamed[k]
        assert b.content_hash == a.content_hash
        assert b.info == a.info
        assert b.features.phash == a.features.phash and b.features.box == a.features.box
        assert np.array_equal(b.features.thumb, a.features.thumb)
    assert isinstance(streamed["broken"], Problem)
    assert streamed["broken"].reason == in_memory["broken"].reason


CRASHING_SCAN = """
import os, sys
sys.path[:0] = [{tests!r}]
import dedupe.read as P
from dedupe.config import Settings

real = P._analyse_data

def analyse(path, *args):  # stands in for a decoder that kills its process (a segfault in a C library)
    if os.path.basename(path) == "poison.jpg":
        os._exit(11)
    return real(path, *args)

P._analyse_data = analyse  # at import time, so the spawned workers, which import this file, crash too
if __name__ == "__main__":
    from dedupe.pipeline import scan
    result = scan([{folder!r}], Settings(workers=2))
    print("GROUPS", sorted(sorted(os.path.basename(m.file.path) for m in g.members) for g in result.groups))
    print("PROBLEMS", sorted((os.path.basename(p.path), p.reason) for p in result.problems))
"""


def test_a_decoder_crash_is_a_problem_and_the_scan_goes_on(tmp_path):
    """A worker process that dies on one file breaks the pool; that file is reported, the others are used."""
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "lib"
    folder.mkdir()
    for n in range(30):  # enough to use the pool
        pic = photo(500 + n, (160, 120))
        (folder / f"p{n:02d}.jpg").write_bytes(encode(pic))
    (folder / "p00_copy.png").write_bytes(encode(photo(500, (160, 120)), "PNG"))
    (folder / "poison.jpg").write_bytes(encode(photo(999, (160, 120))))
    script = tmp_path / "crashing_scan.py"
    script.write_text(CRASHING_SCAN.format(tests=str(Path(__file__).parent), folder=str(folder)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "GROUPS [['p00.jpg', 'p00_copy.png']]" in out.stdout
    assert "('poison.jpg', 'the image decoder crashed on this file')" in out.stdout


def test_an_error_nobody_foresaw_on_one_file_is_a_problem_and_the_scan_goes_on(tmp_path, monkeypatch):
    """A Python error from a library (or from dedupe) while one file is read is reported against that
    file with its type; the other files are grouped as usual."""
    import dedupe.read as read
    from dedupe import Settings, scan

    real = read.describe

    def describe(gray, *args):
        if gray.shape == (90, 120):  # odd.jpg's work image
            raise RuntimeError("something nobody expected")
        return real(gray, *args)

    monkeypatch.setattr(read, "describe", describe)
    pic = photo(71, (160, 120))
    (tmp_path / "a.jpg").write_bytes(encode(pic))
    (tmp_path / "a.png").write_bytes(encode(pic, "PNG"))
    (tmp_path / "odd.jpg").write_bytes(encode(photo(72, (120, 90))))
    result = scan([tmp_path], Settings(workers=1))
    assert [sorted(os.path.basename(m.file.path) for m in g.members) for g in result.groups] == [["a.jpg", "a.png"]]
    [problem] = [p for p in result.problems if p.kind == "error"]
    assert os.path.basename(problem.path) == "odd.jpg"
    assert "RuntimeError: something nobody expected" in problem.reason


def test_large_pngs_and_webps_read_from_disk_are_decoded_by_opencv_alike(tmp_path, monkeypatch):
    """Above IN_MEMORY_LIMIT, a large RGB PNG or WebP is decoded by OpenCV from its path (its chunks read
    through a memory map), as from its bytes below the limit."""
    import dedupe.decode as decode

    pic = photo(52, (900, 700))
    paths = {"png": tmp_path / "big.png", "webp": tmp_path / "big.webp"}
    paths["png"].write_bytes(encode(pic, "PNG"))
    paths["webp"].write_bytes(encode(pic, "WEBP", quality=90))
    in_memory = {k: pipeline.analyse(str(v), 10**9) for k, v in paths.items()}
    from_disk = []
    cv_gray = decode._cv_gray
    monkeypatch.setattr(decode, "_cv_gray", lambda data: from_disk.append(data) or cv_gray(data))
    monkeypatch.setattr(pipeline, "IN_MEMORY_LIMIT", 0)
    streamed = {k: pipeline.analyse(str(v), 10**9) for k, v in paths.items()}
    assert sorted(from_disk) == sorted(str(v) for v in paths.values())
    for k in paths:
        assert streamed[k].content_hash == in_memory[k].content_hash
        assert streamed[k].info == in_memory[k].info
        assert np.array_equal(streamed[k].features.thumb, in_memory[k].features.thumb)


def test_jobs_shrink_at_the_end_so_the_workers_finish_together():
    items = list(range(219))
    jobs = pipeline.guided(items, 2)
    assert [x for job in jobs for x in job] == items  # every file once, in order
    sizes = [len(job) for job in jobs]
    assert sizes[0] == pipeline.CHUNK and max(sizes) == pipeline.CHUNK
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-pipeline.TAIL_JOBS * 2 :] == [1] * (pipeline.TAIL_JOBS * 2)
    assert [len(job) for job in pipeline.guided([1, 2, 3], 8)] == [1, 1, 1]
    assert pipeline.guided([], 2) == []


def test_files_of_one_name_and_nearly_one_cost_are_read_in_turn_by_one_worker():
    """decode_order: costliest first, and within nearly the same cost a name's files side by side (a
    copy whose metadata alone differs, a few hundred bytes smaller or larger); guided never cuts a job
    between them, so one worker reads them in turn and the second finds the first's picture stored."""
    from dedupe.model import FileRecord

    def record(path: str, size: int, fmt: str = "JPEG") -> FileRecord:
        return FileRecord(path, "/lib", size, 0, 1, hash(path) % 10**6, fmt)

    files = [record(f"/lib/2019/IMG_{n:04d}.jpg", 300_000 + 97 * n) for n in range(40)]
    files.append(record("/lib/Backup/2019/IMG_0007.JPG", files[7].size - 310))  # EXIF stripped
    files.append(record("/lib/Downloads/IMG_0021.jpeg", files[21].size + 35))  # EXIF edited
    files.append(record("/lib/big.png", 2_000_000, "PNG"))
    files.append(record("/lib/small.jpg", 20_000))
    order = pipeline.decode_order(files, list(range(len(files))))
    assert sorted(order) == list(range(len(files)))
    assert order[0] == 42 and order[-1] == 43  # costliest first, cheapest last
    for twin, first in ((40, 7), (41, 21)):
        assert abs(order.index(twin) - order.index(first)) == 1
    together = lambda a, b: pipeline.read_key(files[a]) == pipeline.read_key(files[b])  # noqa: E731
    for workers in (1, 2, 4):
        jobs = pipeline.guided(order, workers, together)
        assert [x for job in jobs for x in job] == order
        for twin, first in ((40, 7), (41, 21)):
            assert any(twin in job and first in job for job in jobs)
