"""Library snapshots (dedupe.snapshot): a repeated search answers from the snapshot, with exactly the
results of a search without one; any change to the library (a file added, removed, rewritten, renamed)
is seen; a damaged snapshot is rebuilt; `cache clear` removes them and `--no-cache` writes none; the
keypoint index with pictures added and gone answers as an exhaustive one."""

from __future__ import annotations

import os
import pickle
import shutil
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

import dedupe.index
import dedupe.snapshot as snapshot
from dedupe import scan, search
from dedupe.cache import Cache
from dedupe.cli import app
from images import photo, recompress, resize, save, watermark

SIZE = (400, 300)


@pytest.fixture
def lib(tmp_path) -> tuple[Path, Path]:
    """(library, query outside it): three copies of the query (one a crop) among other photos."""
    root = tmp_path / "library"
    query = photo(71, SIZE)
    save(query, tmp_path / "query.jpg", quality=95)
    save(recompress(query, 50), root / "a" / "q50.jpg")
    save(watermark(query), root / "a" / "marked.jpg")
    save(query.crop((25, 20, 375, 285)), root / "b" / "cropped.jpg")
    for seed in range(72, 80):
        save(photo(seed, SIZE), root / "b" / f"other_{seed}.jpg")
    return root, tmp_path / "query.jpg"


def found(result, n: int = 0) -> list[tuple[str, int, bool, dict]]:
    return [(f.path, f.score, f.match, f.transform) for f in result.queries[n].found]


def snapshot_files(db: Path) -> list[str]:
    folder = Path(f"{db}.snapshots")
    return sorted(p.name.split(".", 1)[1] for p in folder.iterdir()) if folder.exists() else []


def test_a_second_search_uses_the_snapshot_and_finds_the_same(lib, serial, tmp_path):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    first = search([query], [root], serial, cache=db)
    assert first.stats["snapshot"] == "written" and first.stats["keypoint_index"] == "built"
    assert [name.split("-")[0] for name in snapshot_files(db)] == ["files.npz", "kp", "kp"]
    again = search([query], [root], serial, cache=db)
    assert again.stats["snapshot"] == "used" and again.stats["keypoint_index"] == "saved"
    private = search([query], [root], serial)  # no cache, no snapshot: today's path
    assert private.stats["snapshot"] == "none" and private.stats["keypoint_index"] == "exhaustive"
    assert found(again) == found(first) == found(private)
    assert {Path(p).name for p, *_ in found(again)} == {"q50.jpg", "marked.jpg", "cropped.jpg"}
    inside = root / "a" / "q50.jpg"  # a query inside the library is the same library
    assert search([inside], [root], serial, cache=db).stats["snapshot"] == "used"


def test_a_scan_writes_the_snapshot_a_search_uses(lib, serial, tmp_path):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    assert scan([root], serial, cache=db).stats["snapshot"] == "written"
    assert scan([root], serial, cache=db).stats["snapshot"] == "used"
    inside = root / "a" / "marked.jpg"
    result = search([inside], [root], serial, cache=db)
    assert result.stats["snapshot"] == "used"
    assert {Path(p).name for p, *_ in found(result)} == {"q50.jpg", "cropped.jpg"}


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("change", ["added", "removed", "rewritten", "renamed", "crop_added"])
def test_a_changed_library_is_seen(lib, serial, tmp_path, change):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    search([query], [root], serial, cache=db)
    expected = {"q50.jpg", "marked.jpg", "cropped.jpg"}
    if change == "added":
        save(resize(photo(71, SIZE), 0.5), root / "c" / "small.png")
        expected.add("small.png")
    elif change == "removed":
        (root / "a" / "marked.jpg").unlink()
        expected.remove("marked.jpg")
    elif change == "rewritten":  # same size, other picture, later mtime: its identity changed
        other = root / "b" / "other_72.jpg"
        data = (root / "a" / "q50.jpg").read_bytes()
        (root / "a" / "q50.jpg").write_bytes(other.read_bytes()[: len(data)].ljust(len(data), b"\0"))
        _touch_later(root / "a" / "q50.jpg")
        expected.remove("q50.jpg")
    elif change == "renamed":
        os.rename(root / "a" / "marked.jpg", root / "b" / "moved.jpg")
        expected = expected - {"marked.jpg"} | {"moved.jpg"}
    elif change == "crop_added":  # a new picture only keypoints find: from the index of pictures added
        save(photo(71, SIZE).crop((0, 0, 350, 262)), root / "c" / "corner.jpg")
        expected.add("corner.jpg")
    result = search([query], [root], serial, cache=db)
    assert result.stats["snapshot"] == ("used" if change == "renamed" else "updated")  # it holds no paths
    assert {Path(p).name for p, *_ in found(result)} == expected
    assert found(result) == found(search([query], [root], serial))  # as without any snapshot
    assert search([query], [root], serial, cache=db).stats["snapshot"] == "used"


def test_the_table_holds_the_library_not_a_query_outside_it(lib, serial, tmp_path):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    search([query], [root], serial, cache=db)
    table = snapshot.Snapshots(Cache(db), [root]).table()
    st = query.stat()
    assert table is not None and len(table.ids) == 11
    assert table.rows(np.array([[st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]])).tolist() == [-1]
    second = tmp_path / "second.jpg"
    save(photo(90, SIZE), second)
    assert search([second], [root], serial, cache=db).stats["snapshot"] == "used"  # another query: no rewrite


@pytest.mark.parametrize("damaged", ["files.npz", "kp-*.npz", "kp-*.faiss"])
def test_a_damaged_snapshot_is_ignored_and_rewritten(lib, serial, tmp_path, damaged, monkeypatch):
    monkeypatch.setattr(snapshot, "KEEP_REPLACED", 0.0)  # a replaced index is removed at once
    root, query = lib
    db = tmp_path / "cache.sqlite"
    first = search([query], [root], serial, cache=db)
    for p in Path(f"{db}.snapshots").glob(f"*.{damaged}"):
        p.write_bytes(b"not a snapshot")
    again = search([query], [root], serial, cache=db)
    assert found(again) == found(first)
    assert again.stats["snapshot"] == ("written" if damaged == "files.npz" else "used")
    third = search([query], [root], serial, cache=db)
    assert third.stats["snapshot"] == "used" and found(third) == found(first)
    assert len(snapshot_files(db)) == 3


def test_a_cleared_or_rebuilt_cache_does_not_use_old_snapshots(lib, serial, tmp_path):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    search([query], [root], serial, cache=db)
    assert CliRunner().invoke(app, ["cache", "info", "--cache", str(db)]).output.count("library snapshots") == 1
    out = CliRunner().invoke(app, ["cache", "clear", "--cache", str(db)])
    assert out.exit_code == 0 and not Path(f"{db}.snapshots").exists()
    search([query], [root], serial, cache=db)
    saved = Path(f"{db}.snapshots")
    kept = tmp_path / "kept"
    shutil.copytree(saved, kept)
    db.unlink()  # a new cache file: another generation, whatever snapshots lie beside it
    shutil.rmtree(saved)
    shutil.copytree(kept, saved)
    result = search([query], [root], serial, cache=db)
    assert result.stats["snapshot"] == "written" and result.stats["images_from_cache"] == 0


def test_no_cache_writes_no_snapshot(lib, tmp_path, cli_env):
    import subprocess
    import sys

    root, query = lib
    run = subprocess.run(
        [sys.executable, "-m", "dedupe", "search", str(query), "--in", str(root), "--no-cache", "--workers", "1"],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert not list((tmp_path / "xdg-cache").rglob("*.snapshots")) and not list(tmp_path.rglob("*.snapshots"))


def test_old_libraries_are_pruned(lib, serial, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "KEEP", 2)
    root, query = lib
    db = tmp_path / "cache.sqlite"
    for sub in ("a", "b", "."):
        search([query], [root / sub], serial, cache=db)
    assert [name.split(".")[1] for name in os.listdir(f"{db}.snapshots")].count("files") == 2


class Descriptors:
    """What cache.descriptors reads, from a dict of each content's descriptors; `read` records how many
    contents each read asked for."""

    def __init__(self, descs: dict[str, np.ndarray]) -> None:
        self.descs, self.read = descs, []

    def descriptors(self, hashes, _sizes=None):
        self.read.append(len(hashes))
        data = np.concatenate([self.descs[h] for h in hashes] + [np.zeros((0, 32), np.uint8)])
        return data, self.descriptor_counts(hashes)

    def descriptor_counts(self, hashes):
        return np.array([len(self.descs[h]) for h in hashes], dtype=np.int64)


def _small_index(monkeypatch, flat: int, linear: int | None = None, list_size: int = 40) -> None:
    """The keypoint index's limits made small enough for a few dozen pictures (inverted lists past `flat`
    descriptors, linear ones past `linear`), every list searched: exact, for comparisons."""
    for module in (snapshot, dedupe.index):
        monkeypatch.setattr(module, "DESC_FLAT_LIMIT", flat)
        if linear is not None:
            monkeypatch.setattr(module, "LINEAR_FROM", linear)
    if linear is not None:
        monkeypatch.setattr(dedupe.index, "LIST_SIZE", list_size)
    monkeypatch.setattr(snapshot, "SEARCH_NPROBE", 64)


def _answers_as_exhaustive(index, descs: dict, now: list[str], images: list[int]) -> None:
    """The index finds the nearest pictures at the same distances as an exhaustive index of `now`."""
    data, sizes = Descriptors(descs).descriptors(now)
    exact, owner, rank = snapshot._flat(data, np.array(images), sizes)
    queries = np.concatenate([descs[h][:5] for h in now])
    queries[::2, 0] ^= 1  # near, not equal
    dist, image, ranks = index.neighbours(queries, 6, snapshot.SEARCH_NPROBE)
    want_dist, want_ids = exact.search(queries, 6)
    assert np.array_equal(dist, want_dist)
    assert np.array_equal(image[:, 0], owner[want_ids[:, 0]])  # ties further down may differ
    assert np.array_equal(ranks[:, 0], rank[want_ids[:, 0]])
    assert np.array_equal(index.search(queries, 6)[1], image)


@pytest.mark.parametrize("inverted", [False, True])
def test_the_keypoint_index_with_pictures_added_and_gone_answers_as_an_exhaustive_one(
    tmp_path, monkeypatch, inverted
):
    """Random descriptors, some pictures sharing near copies of others' keypoints: the saved index, once
    pictures are removed and added (below and beyond REBUILD_SHARE), finds the same nearest pictures at
    the same distances as one exhaustive index of the pictures there now."""
    monkeypatch.setattr(snapshot, "KEEP_REPLACED", 0.0)  # a replaced index is removed at once
    if inverted:
        monkeypatch.setattr(snapshot, "DESC_FLAT_LIMIT", 100)
        monkeypatch.setattr(dedupe.index, "DESC_FLAT_LIMIT", 100)
        monkeypatch.setattr(snapshot, "SEARCH_NPROBE", 64)  # every list: exact, for the comparison
    rng = np.random.default_rng(5)
    descs = {f"{n:032x}": rng.integers(0, 256, (int(rng.integers(0, 40)), 32), dtype=np.uint8) for n in range(60)}
    cache = Cache(tmp_path / "c.sqlite")
    Kp = partial(Descriptors, descs)
    snaps = snapshot.Snapshots(cache, [tmp_path])
    snaps.cache = Kp()
    first = list(descs)[:40]
    index = snaps.keypoints(list(range(40)), first)
    assert isinstance(index.base, faiss.IndexBinaryIVF if inverted else faiss.IndexBinaryIDMap)
    for share, now in ((0.5, list(descs)[5:45]), (0.0, list(descs)[10:60])):  # kept beside it, then rebuilt
        monkeypatch.setattr(snapshot, "REBUILD_SHARE", share)
        images = [int(h, 16) * 3 for h in now]  # image indices are not the hashes' order
        index = snaps.keypoints(images, now)
        assert (index.delta is not None) == (share > 0) and index.gone == (share > 0)
        _answers_as_exhaustive(index, descs, now, images)
    assert len(list(Path(f"{cache.path}.snapshots").glob("*.kp-*"))) == 2  # the latest index only


@pytest.mark.parametrize("linear", [False, True])
def test_a_library_that_outgrew_its_saved_keypoint_index_gets_new_lists(tmp_path, monkeypatch, linear):
    """A saved exhaustive index of a small library is not rebuilt by adding to it once the library is
    past DESC_FLAT_LIMIT descriptors (every search would read them all): inverted lists are trained for
    it (square-root ones, or linear ones past LINEAR_FROM), and answer as an exhaustive index of the
    pictures there now."""
    _small_index(monkeypatch, 300, 1000 if linear else None, list_size=100)
    if linear:  # read a few whole pictures at a time
        monkeypatch.setattr(snapshot, "ADD_BLOCK", 100)
    rng = np.random.default_rng(8)
    descs = {f"{n:032x}": rng.integers(0, 256, (30, 32), dtype=np.uint8) for n in range(60)}
    Kp = partial(Descriptors, descs)
    snaps = snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path])
    snaps.cache = Kp()
    read = snaps.cache.read
    assert isinstance(snaps.keypoints(list(range(8)), list(descs)[:8]).base, faiss.IndexBinaryIDMap)
    read.clear()
    index = snaps.keypoints(list(range(60)), list(descs))
    assert isinstance(index.base, faiss.IndexBinaryIVF) and index.delta is None and index.how == "built"
    # all 60 pictures at once (the 52 new ones are not read first for nothing), or (linear) the 12 pictures
    # whose 360 descriptors train the 18 lists, then the 60 in parts of about ADD_BLOCK (100) descriptors
    if linear:
        assert read[0] == 12 and sum(read[1:]) == 60 and set(read[1:]) == {3, 4}
    else:
        assert read == [60]
    assert isinstance(faiss.downcast_IndexBinary(index.base.quantizer), faiss.IndexBinaryIVF) == linear
    queries = np.concatenate([d[:3] for d in descs.values()])
    queries[::2, 0] ^= 1
    data, sizes = Kp().descriptors(list(descs))
    exact, owner, _ = snapshot._flat(data, np.arange(60), sizes)
    dist, image, _ = index.neighbours(queries, 4, snapshot.SEARCH_NPROBE)
    want_dist, want_ids = exact.search(queries, 4)
    assert np.array_equal(dist, want_dist) and np.array_equal(image[:, 0], owner[want_ids[:, 0]])


def test_a_table_whose_arrays_disagree_is_ignored(lib, serial, tmp_path):
    root, query = lib
    db = tmp_path / "cache.sqlite"
    first = search([query], [root], serial, cache=db)
    (saved,) = Path(f"{db}.snapshots").glob("*.files.npz")
    with np.load(saved) as z:
        arrays = dict(z)
    arrays["content"][0] = len(arrays["hashes"]) + 5  # loads, but names no content
    np.savez(saved, **arrays)
    again = search([query], [root], serial, cache=db)
    assert again.stats["snapshot"] == "written" and found(again) == found(first)


def test_inverted_lists_answer_alike_with_the_queries_taken_list_by_list():
    import faiss

    from dedupe.index import trained_lists
    from dedupe.snapshot import _search_lists

    rng = np.random.default_rng(12)
    data = rng.integers(0, 256, (6000, 32), dtype=np.uint8)
    data[3000:] = data[:3000] ^ (rng.random((3000, 32)) < 0.03).astype(np.uint8)  # near pairs
    index = trained_lists(data, 40)
    index.add(data)
    queries = data[rng.permutation(len(data))[:2500]]
    index.nprobe = 3
    expected = index.search(queries, 5)
    got = _search_lists(index, queries, 5, 3)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert isinstance(index, faiss.IndexBinaryIVF)


@pytest.mark.parametrize("inverted", [False, True])
def test_a_worker_maps_the_saved_keypoint_index_and_answers_alike(tmp_path, monkeypatch, inverted):
    """A keypoint index pickled for a worker names its saved file, which the worker maps rather than
    reads: the workers share the page cache's copy (a whole one each was 384 MB at 100,000 photos).
    The mapped index answers as the one built."""
    if inverted:
        monkeypatch.setattr(snapshot, "DESC_FLAT_LIMIT", 100)
        monkeypatch.setattr(dedupe.index, "DESC_FLAT_LIMIT", 100)
    rng = np.random.default_rng(9)
    descs = {f"{n:032x}": rng.integers(0, 256, (30, 32), dtype=np.uint8) for n in range(40)}
    snaps = snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path])
    snaps.cache = Descriptors(descs)
    index = snaps.keypoints(list(range(40)), list(descs))
    assert index.how == "built" and index.path is not None
    copy = pickle.loads(pickle.dumps(index))
    if inverted:
        lists = [faiss.downcast_InvertedLists(i.base.invlists) for i in (index, copy)]
        assert isinstance(lists[0], faiss.ArrayInvertedLists) and isinstance(lists[1], faiss.OnDiskInvertedLists)
    queries = np.concatenate([d[:4] for d in descs.values()])
    queries[::2, 0] ^= 1
    for got, want in zip(copy.neighbours(queries, 5), index.neighbours(queries, 5)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("console", [True, False])
def test_linear_lists_are_kept_on_disk_and_rebuilt_from_themselves_with_the_gone_left_in(
    tmp_path, monkeypatch, capfd, console
):
    """Past LINEAR_FROM the lists are filled a part at a time into a file of their own beside the index,
    never all in memory, and nothing is printed (nor fails without a sys.stdout). Rebuilt with pictures
    added, the saved lists are read into a new file, their gone pictures left in it (not answered) until
    they are REBUILD_SHARE of it; then it is built anew. Every index, and a worker's mapped copy, answers
    as an exhaustive one."""
    monkeypatch.setattr(snapshot, "KEEP_REPLACED", 0.0)  # a replaced index is removed at once
    _small_index(monkeypatch, 100, 300)
    monkeypatch.setattr(snapshot, "ADD_BLOCK", 150)  # several parts
    if not console:  # no sys.stdout at all (pythonw)
        monkeypatch.setattr(snapshot.sys, "stdout", None)
    rng = np.random.default_rng(13)
    descs = {f"{n:032x}": rng.integers(0, 256, (int(rng.integers(10, 30)), 32), dtype=np.uint8) for n in range(60)}
    snaps = snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path])
    snaps.cache = Descriptors(descs)
    folder = Path(f"{tmp_path / 'c.sqlite'}.snapshots")
    hashes = list(descs)
    steps = [  # (REBUILD_SHARE, pictures, how, gone pictures among the saved lists' answers)
        (0.2, hashes[:40], "built", False),
        (0.2, hashes[5:60], "rebuilt", True),  # 5 gone (< 0.2), 20 added (> 0.2): from itself, 5 left in
        (0.2, hashes[10:60], "saved", True),  # 5 more gone: 10 of 60 dead, not yet 0.2
        (0.1, hashes[10:60], "built", False),  # past REBUILD_SHARE: anew, without them
    ]
    for share, now, how, gone in steps:
        monkeypatch.setattr(snapshot, "REBUILD_SHARE", share)
        images = [int(h, 16) * 3 for h in now]
        index = snaps.keypoints(images, now, every=True)
        assert (index.how, index.gone) == (how, gone)
        assert isinstance(faiss.downcast_InvertedLists(index.base.invlists), faiss.OnDiskInvertedLists)
        names = sorted(p.name.split(".", 2)[2] for p in folder.iterdir())
        assert names == ["faiss", "ivfdata", "npz"]  # the latest only, and no part left behind
        assert index.path.with_suffix(".ivfdata").stat().st_size >= 40 * sum(len(descs[h]) for h in now) * 0.9
        _answers_as_exhaustive(index, descs, now, images)
        _answers_as_exhaustive(pickle.loads(pickle.dumps(index)), descs, now, images)
    assert capfd.readouterr().out == ""


def test_linear_lists_saved_whole_by_an_earlier_version_move_to_disk_when_rebuilt(tmp_path, monkeypatch):
    """An index of linear lists saved in its own file (as before they were kept on disk) is rebuilt from
    itself into a file of lists, and answers as an exhaustive one."""
    _small_index(monkeypatch, 100, 300)
    rng = np.random.default_rng(14)
    descs = {f"{n:032x}": rng.integers(0, 256, (20, 32), dtype=np.uint8) for n in range(50)}
    snaps = snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path])
    snaps.cache = Descriptors(descs)
    first = list(descs)[:30]
    whole = snapshot._build(snaps.cache, first, snaps.cache.descriptor_counts(first))
    snaps._save_keypoints(whole, np.array(first, dtype="S32"), snaps.cache.descriptor_counts(first), "kp-0")
    assert not list(Path(f"{tmp_path / 'c.sqlite'}.snapshots").glob("*.ivfdata"))
    now = list(descs)
    index = snaps.keypoints(list(range(50)), now, every=True)
    assert index.how == "rebuilt" and index.path.with_suffix(".ivfdata").exists()
    _answers_as_exhaustive(index, descs, now, list(range(50)))


def test_an_index_another_scan_replaced_moments_ago_can_still_be_mapped(tmp_path, monkeypatch):
    """Two scans of one library at once: the first saves its index and hands it to its workers, the
    second saves a newer one meanwhile. The first's workers still map theirs (a replaced index is
    removed only once it is KEEP_REPLACED old), and the next save after that removes it."""
    _small_index(monkeypatch, 100)
    monkeypatch.setattr(snapshot, "REBUILD_SHARE", 0.0)
    rng = np.random.default_rng(15)
    descs = {f"{n:032x}": rng.integers(0, 256, (30, 32), dtype=np.uint8) for n in range(42)}
    hashes = list(descs)
    folder = Path(f"{tmp_path / 'c.sqlite'}.snapshots")
    scans = [snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path]) for _ in range(3)]
    for snaps in scans:
        snaps.cache = Descriptors(descs)
    first = scans[0].keypoints(list(range(40)), hashes[:40], every=True)
    handed = pickle.dumps(first)  # to its workers, which map it when they start
    scans[1].keypoints(list(range(41)), hashes[:41], every=True)  # the other scan saves a newer index
    assert len({p.name.split(".")[1] for p in folder.glob("*.kp-*")}) == 2
    _answers_as_exhaustive(pickle.loads(handed), descs, hashes[:40], list(range(40)))
    monkeypatch.setattr(snapshot, "KEEP_REPLACED", 0.0)
    newest = scans[2].keypoints(list(range(42)), hashes, every=True)
    assert {p.name.split(".")[1] for p in folder.glob("*.kp-*")} == {newest.path.name.split(".")[1]}


@pytest.mark.parametrize("failure", ["part not written", "no room for the lists"])
def test_lists_that_cannot_be_written_on_disk_are_built_in_memory(tmp_path, monkeypatch, failure):
    """A disk too full for the lists (a part whose write fails, or less room than the merged file needs:
    FAISS writes it through a map, where a full disk kills the process) costs memory, not the scan: the
    index is built in memory, saved whole when it can be, and nothing of the lists is left."""
    _small_index(monkeypatch, 100, 300)
    monkeypatch.setattr(snapshot, "ADD_BLOCK", 150)
    if failure == "part not written":
        write = faiss.write_index_binary

        def refuse(index, path):
            if isinstance(path, str) and ".ivfdata." in path:
                raise RuntimeError("No space left on device")
            return write(index, path)

        monkeypatch.setattr(snapshot.faiss, "write_index_binary", refuse)
    else:
        monkeypatch.setattr(snapshot.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    rng = np.random.default_rng(16)
    descs = {f"{n:032x}": rng.integers(0, 256, (20, 32), dtype=np.uint8) for n in range(40)}
    snaps = snapshot.Snapshots(Cache(tmp_path / "c.sqlite"), [tmp_path])
    snaps.cache = Descriptors(descs)
    index = snaps.keypoints(list(range(40)), list(descs), every=True)
    assert index.how == "built" and isinstance(index.base, faiss.IndexBinaryIVF)
    assert isinstance(faiss.downcast_InvertedLists(index.base.invlists), faiss.ArrayInvertedLists)
    names = sorted(p.name.split(".", 2)[2] for p in Path(f"{tmp_path / 'c.sqlite'}.snapshots").iterdir())
    assert names == ["faiss", "npz"]
    _answers_as_exhaustive(index, descs, list(descs), list(range(40)))
