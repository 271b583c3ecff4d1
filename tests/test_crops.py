"""The crop stage's saved votes (snapshot.Nearest): a rescan searches only the keypoints of the pictures
that are new or whose set of copies changed, and finds the groups a cold scan of the same files finds;
a search split between worker processes votes as one search does; a damaged table is searched again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dedupe import Settings, scan
from dedupe.cache import Cache
from dedupe.model import Features, ImageInfo
from dedupe.progress import never
from images import group_names, photo, recompress, save

SIZE = (400, 300)
BOX = (30, 25, 370, 280)  # a crop keeping 72% of the picture: found by keypoints only


def crop_of(seed: int):
    return photo(seed, SIZE).crop(BOX)


def library(root: Path, seeds=range(80, 90)) -> None:
    for seed in seeds:
        save(photo(seed, SIZE), root / f"p{seed}.jpg", quality=92)
    save(crop_of(81), root / "crop81.jpg", quality=92)


def test_a_rescan_after_pictures_were_added_searches_only_those_and_finds_what_a_cold_scan_finds(tmp_path, serial):
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    first = scan([root], serial, cache=db)
    assert first.stats["keypoints_searched"] == 11
    assert {"p81.jpg", "crop81.jpg"} in group_names(first)
    save(crop_of(83), root / "new" / "crop83.jpg", quality=90)  # a crop of a picture scanned before
    save(photo(95, SIZE), root / "new" / "p95.jpg")  # a new picture and its crop
    save(crop_of(95), root / "new" / "crop95.jpg")
    save(recompress(photo(85, SIZE), 60), root / "new" / "p85_q60.jpg")  # a copy: joins a set
    again = scan([root], serial, cache=db)
    assert again.stats["keypoints_searched"] == 4
    cold = scan([root], serial, cache=tmp_path / "other.sqlite")
    assert cold.stats["keypoints_searched"] == 15
    assert sorted(map(sorted, group_names(again))) == sorted(map(sorted, group_names(cold)))
    assert {"p83.jpg", "crop83.jpg"} in group_names(again)
    assert {"p95.jpg", "crop95.jpg"} in group_names(again)
    assert {"p85.jpg", "p85_q60.jpg"} in group_names(again)
    last = scan([root], serial, cache=db)  # nothing changed since: the pairs saved with the table
    assert last.stats["keypoints_searched"] == 0
    assert group_names(last) == group_names(again)


def test_pictures_whose_vote_went_to_a_picture_gone_are_searched_again(tmp_path, serial):
    """The crop voted for its original or the original's copy; with the original gone, it is searched
    again and still found with the copy, as a cold scan finds it."""
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    save(recompress(photo(81, SIZE), 70), root / "p81_q70.jpg")
    scan([root], serial, cache=db)
    os.remove(root / "p81.jpg")
    again = scan([root], serial, cache=db)
    assert 0 < again.stats["keypoints_searched"] < 11
    cold = scan([root], serial, cache=tmp_path / "other.sqlite")
    assert sorted(map(sorted, group_names(again))) == sorted(map(sorted, group_names(cold)))
    assert {"p81_q70.jpg", "crop81.jpg"} in group_names(again)


def test_a_damaged_table_is_searched_again(tmp_path, serial):
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    first = scan([root], serial, cache=db)
    (table,) = Path(f"{db}.snapshots").glob("*.nearest.npz")
    table.write_bytes(b"not a table")
    again = scan([root], serial, cache=db)
    assert again.stats["keypoints_searched"] == 11
    assert group_names(again) == group_names(first)


def _descriptors(rng, n):
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def _flip(rng, desc, bits):
    out = desc.copy()
    for row in out:
        for b in rng.choice(256, bits, replace=False):
            row[b // 8] ^= 1 << (b % 8)
    return out


def test_the_search_split_between_worker_processes_votes_as_one_search(tmp_path):
    """Past index.DESC_FLAT_LIMIT descriptors the workers each search a share of the pictures in the
    index file: the same pairs as in one process, and as index.keypoint_pairs."""
    from dedupe.crops import _keypoint_pairs
    from dedupe.index import DESC_FLAT_LIMIT, keypoint_pairs
    from dedupe.snapshot import Snapshots
    from dedupe.workers import Workers

    rng = np.random.default_rng(7)
    n_sets = DESC_FLAT_LIMIT // 96 + 10
    sets = [_descriptors(rng, 96) for _ in range(n_sets)]
    sets += [_flip(rng, sets[7], 4), np.concatenate([_flip(rng, sets[20][:40], 3), _descriptors(rng, 50)])]
    labels = np.arange(len(sets))
    labels[-2] = 7  # a copy of set 7, found before: one label
    info = ImageInfo(96, 96, "PNG", True, 96 * 96)
    hashes = [f"{n:032x}" for n in range(len(sets))]
    pairs = []
    for count in (2, 1):
        cache = Cache(None)
        for h, desc in zip(hashes, sets):
            feats = Features(0, 0, np.zeros((8, 8), np.uint8), kp_xy=np.zeros((len(desc), 2), np.float16), kp_desc=desc)
            cache.put_image(h, info, feats, keypoints=True)
        workers = Workers(Settings(workers=count), cache)
        try:
            voted, searched = _keypoint_pairs(hashes, labels, Snapshots(cache, [tmp_path]), workers, never)
            assert searched == len(sets)
            assert (workers._pool is not None) == (count == 2)  # the search did run in the pool
            pairs.append(voted)
        finally:
            workers.close()
            cache.close()
    assert pairs[0] == pairs[1] == keypoint_pairs(sets, labels) == [(20, n_sets + 1)]


def test_an_index_built_while_the_pictures_come_in_votes_as_one_built_after(tmp_path, monkeypatch):
    """The keypoint index built as the pictures are read (in another order than the walk's, trained on
    the first ones) is the one the crop stage searches, and it finds the same pairs."""
    import dedupe.snapshot as snapshot
    from dedupe.crops import _keypoint_pairs
    from dedupe.index import DESC_FLAT_LIMIT, keypoint_pairs
    from dedupe.workers import Workers

    rng = np.random.default_rng(11)
    sets = [_descriptors(rng, 96) for _ in range(DESC_FLAT_LIMIT // 96 + 40)]
    sets[30] = np.concatenate([_flip(rng, sets[3][:45], 3), _descriptors(rng, 40)])
    hashes = [f"{n:032x}" for n in range(len(sets))]
    cache = Cache(None)
    info = ImageInfo(96, 96, "PNG", True, 96 * 96)
    for h, desc in zip(hashes, sets):
        feats = Features(0, 0, np.zeros((8, 8), np.uint8), kp_xy=np.zeros((len(desc), 2), np.float16), kp_desc=desc)
        cache.put_image(h, info, feats, keypoints=True)
    snapshots = snapshot.Snapshots(cache, [tmp_path])
    build = snapshots.keypoint_build(len(sets))
    assert build is not None and snapshots.keypoint_build(10) is None  # too few for inverted lists
    monkeypatch.setattr(snapshot.KeypointBuild, "STEP", 7)
    for n in rng.permutation(len(sets)):
        build.add(hashes[n])
    snapshots.adopt(build)
    assert snapshots.built is not None

    def rebuilt(*args):
        raise AssertionError("the crop stage built another index")

    monkeypatch.setattr(snapshot, "_build", rebuilt)
    workers = Workers(Settings(workers=1), cache)
    try:
        voted, _ = _keypoint_pairs(hashes, np.arange(len(sets)), snapshots, workers, never)
    finally:
        workers.close()
        cache.close()
    assert voted == keypoint_pairs(sets, np.arange(len(sets))) == [(3, 30)]


def test_a_scan_with_the_index_built_while_reading_groups_as_one_without(tmp_path, serial, monkeypatch):
    import dedupe.snapshot as snapshot

    root = tmp_path / "lib"
    library(root)
    save(crop_of(86), root / "crop86.jpg", quality=88)
    monkeypatch.setattr(snapshot, "DESC_FLAT_LIMIT", 200)  # inverted lists for a dozen pictures
    monkeypatch.setattr(snapshot.KeypointBuild, "SAMPLE", 1)
    monkeypatch.setattr(snapshot.KeypointBuild, "STEP", 3)
    adopted = []
    adopt = snapshot.Snapshots.adopt
    monkeypatch.setattr(snapshot.Snapshots, "adopt", lambda self, build: adopted.append(build) or adopt(self, build))
    built = scan([root], serial, cache=tmp_path / "a.sqlite")
    assert len(adopted) == 1 and adopted[0].index is not None
    monkeypatch.setattr(snapshot.Snapshots, "keypoint_build", lambda self, images: None)
    after = scan([root], serial, cache=tmp_path / "b.sqlite")
    assert {"p81.jpg", "crop81.jpg"} in group_names(built) and {"p86.jpg", "crop86.jpg"} in group_names(built)
    assert sorted(map(sorted, group_names(built))) == sorted(map(sorted, group_names(after)))
