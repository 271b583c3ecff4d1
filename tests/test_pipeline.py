"""The per-file analysis of the pipeline: one read gives the content hash, the decode and the features."""

from __future__ import annotations

import numpy as np
import pytest

from dedupe import pipeline
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
