"""Stage 2: byte-identical files, by size then content hash."""

from __future__ import annotations

import os

import numpy as np

from dedupe.exact import coded_picture, content_hash_bytes, content_hash_file, find_exact
from dedupe.walk import walk
from images import add_comment, encode, photo, recompress, save, strip_metadata, with_metadata

TITLE = "2/7: hashing files of equal size"


def test_content_hash_of_file_equals_hash_of_bytes(tmp_path):
    data = encode(photo(3, (200, 150)))
    (tmp_path / "a.jpg").write_bytes(data)
    h = content_hash_file(str(tmp_path / "a.jpg"))
    assert h == content_hash_bytes(data)
    assert len(h) == 32 and int(h, 16) >= 0
    assert content_hash_bytes(data + b"\x00") != h


def test_identical_files_grouped_same_size_different_content_not(tmp_path, serial):
    a = encode(photo(1, (160, 120)))
    save(photo(2, (160, 120)), tmp_path / "other.png")
    for name in ("a.jpg", "copy1.jpg", "sub/copy2.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(a)
    # same size as `a`, one byte different at the end (still a JPEG by its first bytes)
    (tmp_path / "same_size.jpg").write_bytes(a[:-3] + bytes([a[-3] ^ 0xFF]) + a[-2:])
    files = walk([tmp_path], serial).files
    by_name = {os.path.basename(f.path): i for i, f in enumerate(files)}
    hashes, sets, problems = find_exact(files, TITLE)
    assert problems == []
    assert sets == [sorted([by_name["a.jpg"], by_name["copy1.jpg"], by_name["copy2.jpg"]])]
    assert by_name["same_size.jpg"] in hashes  # hashed because its size is shared, but not grouped
    assert hashes[by_name["same_size.jpg"]] != hashes[by_name["a.jpg"]]
    assert by_name["other.png"] not in hashes  # a unique size is never hashed here


def test_unique_sizes_hash_nothing(tmp_path, serial):
    for n in range(3):
        save(photo(n, (100 + 10 * n, 80)), tmp_path / f"{n}.png")
    hashes, sets, problems = find_exact(walk([tmp_path], serial).files, TITLE)
    assert (hashes, sets, problems) == ({}, [], [])


def test_file_gone_before_hashing_is_a_problem(tmp_path, serial):
    data = encode(photo(1, (120, 90)))
    (tmp_path / "a.jpg").write_bytes(data)
    (tmp_path / "b.jpg").write_bytes(data)
    files = walk([tmp_path], serial).files
    os.remove(tmp_path / "b.jpg")
    hashes, sets, problems = find_exact(files, TITLE)
    assert sets == []
    assert [os.path.basename(p.path) for p in problems] == ["b.jpg"]
    assert problems[0].stage == "exact" and "cannot read" in problems[0].reason


def test_the_coded_picture_of_a_jpeg_leaves_its_metadata_out():
    pic = photo(5, (240, 180))
    data = with_metadata(pic, date="2019:07:14 10:11:12", make="Canon", model="Canon EOS 80D")
    key = coded_picture(data)
    assert key is not None
    restamped = with_metadata(pic, date="2001:01:01 00:00:00", make="Apple", model="iPhone 8")  # same scans
    assert restamped != data and coded_picture(restamped) == key
    assert coded_picture(strip_metadata(data)) == key
    assert coded_picture(add_comment(data)) == key
    no_jfif = data[:2] + data[4 + int.from_bytes(data[4:6], "big") :]  # its first segment is JFIF's APP0
    assert data[2:4] == b"\xff\xe0" and coded_picture(no_jfif) == key

    assert coded_picture(with_metadata(recompress(pic, 90), quality=92)) != key  # other pixels
    scan = data.index(b"\xff\xda")
    flipped = data[: scan + 40] + bytes([data[scan + 40] ^ 0x01]) + data[scan + 41 :]
    assert coded_picture(flipped) != key
    assert coded_picture(data[:-200]) != key  # truncated: other scans
    assert coded_picture(encode(pic, "PNG")) is None
    assert coded_picture(data[:20]) is None and coded_picture(b"\xff\xd8\x00\x01garbage") is None


def test_without_the_usual_component_ids_whether_jfif_is_there_counts():
    """A decoder takes colours for YCbCr with a JFIF segment, or from the usual ids 1, 2, 3; a picture
    whose components are called R, G, B decodes otherwise once its JFIF segment is gone."""
    data = encode(photo(6, (160, 120)), quality=90)
    sof = data.index(b"\xff\xc0")
    assert data[sof + 9] == 3 and data[sof + 10 : sof + 19 : 3] == b"\x01\x02\x03"
    rgb = bytearray(data)
    rgb[sof + 10 : sof + 19 : 3] = b"RGB"
    rgb = bytes(rgb)
    no_jfif = rgb[:2] + rgb[4 + int.from_bytes(rgb[4:6], "big") :]
    assert coded_picture(no_jfif) != coded_picture(rgb)
    assert coded_picture(add_comment(rgb)) == coded_picture(rgb)


def test_the_coded_picture_of_any_broken_jpeg_is_a_hash_or_none():
    """Every prefix of a JPEG's header, and bytes changed anywhere in it: no exception escapes (a scan
    looks at every file this way before decoding it)."""
    data = with_metadata(photo(7, (64, 48)))
    scan = data.index(b"\xff\xda")
    rng = np.random.default_rng(0)
    broken = [data[:n] for n in range(scan + 12)]
    for _ in range(300):
        b = bytearray(data[: scan + 40])
        for at in rng.integers(2, len(b), 3):
            b[at] = int(rng.integers(0, 256))
        broken.append(bytes(b))
    for b in broken:
        assert coded_picture(b) is None or len(coded_picture(b)) == 32
    assert coded_picture(data[: scan + 12]) is not None and coded_picture(data[:scan]) is None
