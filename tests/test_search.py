"""`dedupe search IMAGE... --in DIR`: every planted copy of a query and nothing else, with its transform;
related pictures only when asked; the scan's cache, so a second search (or one after a scan) decodes
nothing; exit codes a shell script can use."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dedupe import SearchError, Settings, scan, search
from dedupe.cli import app
from images import border, cloudy, encode, grayscale, logo, photo, recompress, resize, save, watermark

SIZE = (400, 300)
BOX = (25, 20, 375, 285)  # a crop keeping 77% of the picture
PLANTED = {
    "exact.jpg": lambda p: p,
    "q50.jpg": lambda p: recompress(p, 50),
    "half.png": lambda p: resize(p, 0.5),
    "marked.jpg": watermark,
    "logo.webp": logo,
    "gray.jpg": grayscale,
    "framed.png": lambda p: border(p, 0.05),
    "turned.jpg": lambda p: p.rotate(90, expand=True),
    "mirrored.jpg": lambda p: p.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "cropped.jpg": lambda p: p.crop(BOX),
    "turned_crop.jpg": lambda p: p.crop(BOX).rotate(-90, expand=True),
}


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(library, query outside it, a second query): the query's copies planted in sub-folders among other
    photos, photos in its palette, an overlapping view, the second query's copy and files that are no
    pictures at all."""
    base = tmp_path_factory.mktemp("search")
    root = base / "library"
    query = photo(71, SIZE)
    save(query, base / "query.jpg", quality=95)
    (root / "2020").mkdir(parents=True)
    (root / "2020" / "exact.jpg").write_bytes((base / "query.jpg").read_bytes())
    for name, edit in PLANTED.items():
        if name != "exact.jpg":
            save(edit(query), root / ("edited" if "crop" in name or "turn" in name else "2021") / name, quality=92)
    save(query.crop((180, 0, 400, 300)), root / "2021" / "overlapping.jpg")  # 55% of it: not one picture
    for seed in range(72, 84):
        save(photo(seed, SIZE), root / "2019" / f"other_{seed}.jpg")
    save(photo(85, SIZE, palette_seed=71), root / "2019" / "same_palette.jpg")
    second = photo(90, (320, 320))
    save(second, base / "second.jpg")
    save(resize(second, 0.8), root / "2019" / "second_small.jpg")
    (root / "2019" / "broken.jpg").write_bytes(encode(photo(91, SIZE))[:300])
    (root / "notes.txt").write_text("not a picture")
    return root, base / "query.jpg", base / "second.jpg"


def names(result, n: int = 0, matches_only: bool = True) -> set[str]:
    return {Path(f.path).name for f in result.queries[n].found if f.match or not matches_only}


def test_finds_every_planted_copy_and_nothing_else(lib, serial, tmp_path):
    root, query, _ = lib
    result = search([query], [root], serial, cache=tmp_path / "cache.sqlite")
    assert names(result, matches_only=False) == set(PLANTED)
    found = {Path(f.path).name: f for f in result.queries[0].found}
    scores = [f.score for f in result.queries[0].found]
    assert scores == sorted(scores, reverse=True)
    assert found["exact.jpg"].byte_identical and found["exact.jpg"].score == 100
    for name in ("q50.jpg", "half.png", "gray.jpg", "marked.jpg"):
        assert found[name].band == "near identical", found[name]
    assert found["turned.jpg"].transform["rotated"] == 270
    assert found["mirrored.jpg"].transform["mirrored"]
    assert found["framed.png"].transform["frame removed"] == "match"
    for name, turn in (("cropped.jpg", None), ("turned_crop.jpg", 90)):
        t = found[name].transform
        assert t["crop"]["of"] == "match" and t.get("rotated") == turn, t
        assert np.allclose(t["crop"]["box"], BOX, atol=4), t
    assert result.problems and all("broken.jpg" in p.path for p in result.problems)


def test_a_featureless_query_finds_its_crop_and_is_found_from_it(serial, tmp_path, monkeypatch):
    """A featureless picture has few keypoints to vote with, or none (here their votes are not counted):
    its crop, which no hash brings near, is proposed by layout as in a scan, whichever of the two is the
    query. Another featureless picture is not found, nor the crop without its layout."""
    module = importlib.import_module("dedupe.search")  # the package's `search` is the function
    monkeypatch.setattr(module, "QUERY_VOTES", 10**6)
    root = tmp_path / "lib"
    root.mkdir()
    original = cloudy(2)
    save(original, tmp_path / "query.jpg", quality=95)
    save(original.crop((0, 0, 680, 510)), root / "crop.jpg", quality=88)  # 72%, a corner: no hash near
    save(cloudy(12), root / "other.jpg", quality=90)
    result = search([tmp_path / "query.jpg"], [root], serial, cache=tmp_path / "cache.sqlite")
    assert names(result) == {"crop.jpg"} and result.stats["candidate_pairs"] == 0
    assert result.queries[0].found[0].transform["crop"]["of"] == "match"
    save(original, root / "original.jpg", quality=95)
    result = search([root / "crop.jpg"], [root], serial, cache=tmp_path / "cache.sqlite")
    assert names(result) == {"original.jpg"}
    monkeypatch.setattr(module, "layout_pairs", lambda *args: [])
    assert names(search([tmp_path / "query.jpg"], [root], serial, cache=tmp_path / "other.sqlite")) == {"original.jpg"}


def test_similar_adds_related_pictures_apart(lib, serial, tmp_path):
    root, query, _ = lib
    result = search([query], [root], serial, cache=tmp_path / "cache.sqlite", similar=True)
    related = [f for f in result.queries[0].found if not f.match]
    assert [Path(f.path).name for f in related] == ["overlapping.jpg"]
    assert related[0].band == "related" and 50 <= related[0].score < 70
    assert result.queries[0].found[-1] is related[0]  # after every match
    assert names(result) == set(PLANTED)


def test_top_and_threshold(lib, serial, tmp_path):
    root, query, _ = lib
    db = tmp_path / "cache.sqlite"
    top = search([query], [root], serial, cache=db, top=3)
    assert len(top.queries[0].found) == 3 and top.queries[0].found[0].score == 100
    strict = search([query], [root], serial, cache=db, threshold=99)
    assert strict.queries[0].found and all(f.score >= 99 for f in strict.queries[0].found)
    assert names(strict) < set(PLANTED)


def test_several_queries_and_a_query_inside_the_library(lib, serial, tmp_path):
    root, query, second = lib
    inside = root / "2021" / "q50.jpg"
    result = search([query, second, inside], [root], serial, cache=tmp_path / "cache.sqlite")
    assert names(result, 0) == set(PLANTED)
    assert names(result, 1) == {"second_small.jpg"}
    assert "q50.jpg" not in names(result, 2)  # a file is not a copy of itself
    assert names(result, 2) == set(PLANTED) - {"q50.jpg"}
    assert [Path(q.query).name for q in result.queries] == ["query.jpg", "second.jpg", "q50.jpg"]


def test_a_hard_link_to_the_query_in_the_library_is_found(serial, tmp_path):
    """`search phone/a.jpg --in backup`, backup holding a hard link to it: "no match" said the backup did
    not hold the picture."""
    (tmp_path / "phone").mkdir()
    (tmp_path / "backup").mkdir()
    query = tmp_path / "phone" / "a.jpg"
    query.write_bytes(encode(photo(61, (320, 240))))
    (tmp_path / "backup" / "a_link.jpg").hardlink_to(query)
    (tmp_path / "backup" / "other.jpg").write_bytes(encode(photo(62, (320, 240))))
    (found,) = search([query], [tmp_path / "backup"], serial, cache=tmp_path / "c.sqlite").queries
    assert [(Path(f.path).name, f.byte_identical) for f in found.found] == [("a_link.jpg", True)]
    (itself,) = search([query], [tmp_path], serial, cache=tmp_path / "c.sqlite").queries
    assert [Path(f.path).name for f in itself.found] == ["a_link.jpg"]  # never the query's own path


class Decodes:
    """Stands in for the decoder and remembers which files it was asked to decode."""

    def __init__(self, real):
        self.real, self.files = real, []

    def __call__(self, path, *args, **kw):
        self.files.append(Path(path).name)
        return self.real(path, *args, **kw)


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    read = importlib.import_module("dedupe.read")
    counter = Decodes(read._analyse_data)
    monkeypatch.setattr(read, "_analyse_data", counter)
    return counter


def test_a_second_search_decodes_nothing(lib, serial, tmp_path, decodes):
    root, query, _ = lib
    db = tmp_path / "cache.sqlite"
    first = search([query], [root], serial, cache=db)
    assert first.stats["images_from_cache"] == 0 and len(decodes.files) > 20
    decodes.files.clear()
    again = search([query], [root], serial, cache=db)
    assert decodes.files == ["broken.jpg"]  # what could not be read is tried again; nothing else is decoded
    assert again.stats["images_from_cache"] == again.stats["images_decoded"]
    assert [(f.path, f.score) for f in again.queries[0].found] == [(f.path, f.score) for f in first.queries[0].found]


def test_a_search_after_a_scan_decodes_nothing(lib, serial, tmp_path, decodes):
    root, query, _ = lib
    db = tmp_path / "cache.sqlite"
    scan([root], serial, cache=db)
    decodes.files.clear()
    inside = root / "2021" / "marked.jpg"  # the scan read it
    result = search([inside], [root], serial, cache=db)
    assert decodes.files == ["broken.jpg"]
    assert names(result) == set(PLANTED) - {"marked.jpg"}


def test_a_copied_library_is_hashed_not_decoded(lib, serial, tmp_path, decodes):
    root, query, _ = lib
    db = tmp_path / "cache.sqlite"
    search([query], [root], serial, cache=db)
    moved = shutil.copytree(root, tmp_path / "copy")
    decodes.files.clear()
    result = search([query], [moved], serial, cache=db)
    assert decodes.files == ["broken.jpg"]
    assert names(result) == set(PLANTED)


def test_errors_are_search_errors(lib, serial, tmp_path):
    root, query, _ = lib
    with pytest.raises(SearchError, match="no such file"):
        search([tmp_path / "gone.jpg"], [root], serial)
    with pytest.raises(SearchError, match="not a file"):
        search([root], [root], serial)
    with pytest.raises(SearchError, match="not an image"):
        search([root / "notes.txt"], [root], serial)
    with pytest.raises(SearchError, match="truncated"):
        search([root / "2019" / "broken.jpg"], [root], serial)
    with pytest.raises(SearchError, match="no such file or folder"):
        search([query], [tmp_path / "nowhere"], serial)


def test_settings_reach_the_search(lib, tmp_path):
    root, query, _ = lib
    plain = Settings(workers=1, rotations=False, mirror=False, crops=False)
    result = search([query], [root], plain, cache=tmp_path / "cache.sqlite")
    assert not names(result) & {"turned.jpg", "mirrored.jpg", "turned_crop.jpg"}
    assert "keypoint_checks" not in result.stats


# --------------------------------------------------------------------------- command line


def run(*args):
    return CliRunner().invoke(app, ["search", *map(str, args), "--workers", "1", "-q"])


def stderr_of(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):  # older click: stderr mixed into output
        return result.output


def test_cli_text_and_exit_codes(lib, tmp_path):
    root, query, second = lib
    both = run(query, second, "--in", root)
    assert both.exit_code == 0, both.output
    lines = both.stdout.splitlines()
    assert lines[0] == f"{query}: {len(PLANTED)} matches"
    assert "byte-identical" in lines[1] and lines[1].lstrip().startswith("100  near identical")
    assert any("this file is the part" in line for line in lines)
    assert f"{second}: 1 match" in lines
    stranger = save(photo(99, SIZE), tmp_path / "stranger.jpg")
    missing = run(query, stranger, "--in", root)
    assert missing.exit_code == 1 and f"{stranger}: no match" in missing.stdout


def test_cli_json(lib):
    root, query, _ = lib
    result = run(query, "--in", root, "--json", "--similar", "--top", "20")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["threshold"] == 70 and data["roots"] == [str(root)]
    (q,) = data["queries"]
    assert q["query"] == str(query) and len(q["found"]) == len(PLANTED) + 1
    for f in q["found"]:
        assert set(f) == {
            "path", "score", "band", "match", "byte_identical", "ssim", "hash_distance", "transform", "width",
            "height",
        }  # fmt: skip
    assert [f["match"] for f in q["found"]] == [True] * len(PLANTED) + [False]
    assert data["problems"][0]["reason"].startswith("truncated")


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "no such file"),
        ("text", "not an image"),
        ("no_root", "no such file or folder"),
        ("top", "--top must be"),
        ("threshold", "threshold must be"),
        ("both_caches", "cannot be used together"),
    ],
)
def test_cli_errors_exit_2_with_one_line(lib, tmp_path, case, message):
    root, query, _ = lib
    args = {
        "missing": [tmp_path / "gone.jpg", "--in", root],
        "text": [root / "notes.txt", "--in", root],
        "no_root": [query, "--in", tmp_path / "nowhere"],
        "top": [query, "--in", root, "--top", "0"],
        "threshold": [query, "--in", root, "--threshold", "101"],
        "both_caches": [query, "--in", root, "--cache", tmp_path / "c.sqlite", "--no-cache"],
    }[case]
    result = run(*args)
    assert result.exit_code == 2, result.output
    err = stderr_of(result).strip()
    assert err.startswith("dedupe: ") and message in err and "\n" not in err, err


def test_candidates_of_queries_are_the_scans_pairs_that_hold_a_query():
    """find_candidates with `queries` gives exactly the pairs (and turns) of the full search that involve a
    query: the same hashes and radii, whichever side of a pair the query is on."""
    from dedupe.candidates import find_candidates
    from dedupe.progress import NullProgress

    rng = np.random.default_rng(5)
    n = 400
    codes = rng.integers(0, 2**63, size=(n, 10), dtype=np.uint64)
    flips = lambda k: np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))  # noqa: E731
    for a in rng.choice(n, 120, replace=False):
        b, c = rng.choice(n, 2, replace=False)
        codes[b] = codes[a] ^ flips(int(rng.integers(0, 16)))  # a near copy: every hash close
        codes[c, 0] = codes[a, 2 + int(rng.integers(1, 8))] ^ flips(int(rng.integers(0, 9)))  # a turned copy
    framed = rng.random(n) < 0.2
    images = list(range(0, 2 * n, 2))  # image numbers are file indices, not positions
    every = find_candidates(images, codes, framed, Settings(), NullProgress(), "all")
    queries = [images[i] for i in rng.choice(n, 25, replace=False)]
    asked = find_candidates(images, codes, framed, Settings(), NullProgress(), "queries", queries=queries)
    assert asked == {p: t for p, t in every.items() if set(p) & set(queries)}
    assert sum(len(t) > 1 or 0 not in t for t in asked.values()) > 5  # turned pairs were among them
