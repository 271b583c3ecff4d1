"""The crop stage's saved votes (snapshot.Nearest): a rescan searches only the keypoints of the pictures
that are new or whose set of copies changed, and finds the groups a cold scan of the same files finds;
a search split between worker processes votes as one search does; a damaged table is searched again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dedupe import Settings, scan
from dedupe.cache import Cache
from dedupe.model import Features, ImageInfo
from dedupe.progress import never
from images import exif, group_names, photo, recompress, save

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


@pytest.mark.parametrize("split", [False, True])
def test_keypoints_whose_vote_went_to_a_picture_gone_are_searched_again(tmp_path, serial, monkeypatch, split):
    """The crop voted for its original or the original's copy; with the original gone, the keypoints
    that voted for it are searched again, alone (no picture whole; `split`: between two workers), and
    the crop is still found with the copy: every keypoint votes as in a cold scan."""
    import dedupe.crops

    if split:  # the pool searches from a few keypoints on
        monkeypatch.setattr(dedupe.crops, "DESC_FLAT_LIMIT", 10)
        serial = Settings(workers=2)
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    save(recompress(photo(81, SIZE), 70), root / "p81_q70.jpg")
    first = scan([root], serial, cache=db)
    assert first.stats["votes_searched_again"] == 0
    before = _votes_by_picture(db)
    os.remove(root / "p81.jpg")
    again = scan([root], serial, cache=db)
    (gone,) = set(before) - set(_votes_by_picture(db))
    lost = sum(t == gone for h, votes in before.items() if h != gone for t, _ in votes)
    assert again.stats["keypoints_searched"] == 0 and again.stats["votes_searched_again"] == lost > 10
    cold = scan([root], serial, cache=tmp_path / "other.sqlite")
    assert sorted(map(sorted, group_names(again))) == sorted(map(sorted, group_names(cold)))
    assert {"p81_q70.jpg", "crop81.jpg"} in group_names(again)
    assert _votes_by_picture(db) == _votes_by_picture(tmp_path / "other.sqlite")


def test_the_saved_votes_moved_a_part_at_a_time_are_those_moved_at_once(tmp_path, serial, monkeypatch):
    """A rescan moves the saved keypoints' votes to where their pictures are now (pictures added before
    them in the walk), VOTE_BLOCK keypoints at a time: parts of about one picture give the same table
    as one part."""
    import dedupe.crops

    root, added = tmp_path / "lib", tmp_path / "added"
    library(root)
    save(crop_of(83), added / "a_crop83.jpg", quality=90)  # walked before the pictures saved
    save(photo(96, SIZE), added / "a_p96.jpg")
    tables, before = [], None
    for n, block in enumerate((dedupe.crops.VOTE_BLOCK, 60)):
        monkeypatch.setattr(dedupe.crops, "VOTE_BLOCK", block)
        db = tmp_path / f"cache{n}.sqlite"
        scan([root], serial, cache=db)
        before = before or _votes_by_picture(db)
        for name in ("a_crop83.jpg", "a_p96.jpg"):
            os.rename(added / name, root / name)
        again = scan([root], serial, cache=db)
        for name in ("a_crop83.jpg", "a_p96.jpg"):
            os.rename(root / name, added / name)
        assert 0 < again.stats["keypoints_searched"] < 11  # most saved votes moved, not searched
        assert {"p83.jpg", "a_crop83.jpg"} in group_names(again)
        (saved,) = Path(f"{db}.snapshots").glob("*.nearest.npz")
        with np.load(saved) as z:
            tables.append({k: z[k] for k in z.files})
    assert tables[0].keys() == tables[1].keys()
    assert all(np.array_equal(tables[0][k], tables[1][k]) for k in tables[0])
    # each picture kept votes as before, keypoint by keypoint, or for a new picture that came nearer
    after, same = _votes_by_picture(tmp_path / "cache0.sqlite"), 0
    new = {h for h in after if h not in before}
    for h, votes in before.items():
        if h in after and len(after[h]) == len(votes):
            for (t0, d0), (t1, d1) in zip(votes, after[h]):
                assert (t1, d1) == (t0, d0) or (t1 in new and (t0 == b"" or d1 <= d0))
                same += (t1, d1) == (t0, d0)
    assert same > 500


def _votes_by_picture(db: Path) -> dict[bytes, list[tuple[bytes, int]]]:
    """{picture's content hash: [(hash of the picture each keypoint votes for, distance)]} of the saved table."""
    (saved,) = Path(f"{db}.snapshots").glob("*.nearest.npz")
    with np.load(saved) as z:
        hashes, counts, target, dist = z["hashes"], z["counts"], z["target"], z["dist"]
    voted = [hashes[t] if t >= 0 else b"" for t in target.tolist()]
    ends = np.cumsum(counts).tolist()
    return {
        h: list(zip(voted[end - c : end], dist[end - c : end].tolist()))
        for h, c, end in zip(hashes.tolist(), counts.tolist(), ends)
    }


def test_a_rescan_of_an_unchanged_library_reads_the_saved_pairs_not_the_votes(tmp_path, serial):
    """The votes (5 bytes a keypoint) are read only when some picture must be searched: with them
    damaged, an unchanged library still gets its saved pairs, and a changed one searches everything."""
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    first = scan([root], serial, cache=db)
    (table,) = Path(f"{db}.snapshots").glob("*.nearest.npz")
    with np.load(table) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["target"], arrays["dist"] = arrays["target"][:-1], arrays["dist"][:-1]
    with open(table, "wb") as fh:
        np.savez(fh, **arrays)
    again = scan([root], serial, cache=db)
    assert again.stats["keypoints_searched"] == 0
    assert group_names(again) == group_names(first)
    save(photo(95, SIZE), root / "p95.jpg")
    changed = scan([root], serial, cache=db)
    assert changed.stats["keypoints_searched"] == 12
    assert group_names(changed) == group_names(first)


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


def test_the_search_split_between_worker_processes_votes_as_one_search(tmp_path, monkeypatch):
    """Past index.DESC_FLAT_LIMIT descriptors the workers each search a share of the pictures in the
    index file (the main process lets go of its copy): the same pairs as in one process, and as
    voting.keypoint_pairs; and the same again with the queries read from the cache, and their votes
    turned into votes of sets, in smaller parts of whole pictures."""
    import dedupe.crops
    from dedupe.crops import _keypoint_pairs
    from dedupe.index import DESC_FLAT_LIMIT
    from voting import keypoint_pairs
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
    pairs, search = [], Workers.map
    for count, block in ((2, dedupe.crops.QUERY_BLOCK), (1, dedupe.crops.QUERY_BLOCK), (1, 500)):
        monkeypatch.setattr(dedupe.crops, "QUERY_BLOCK", block)
        monkeypatch.setattr(dedupe.crops, "VOTE_BLOCK", block)  # votes turned into votes of sets in parts
        cache = Cache(None)
        for h, desc in zip(hashes, sets):
            feats = Features(0, 0, np.zeros((8, 8), np.uint8), kp_xy=np.zeros((len(desc), 2), np.float16), kp_desc=desc)
            cache.put_image(h, info, feats, keypoints=True)
        read, let_go = [], []
        descriptors = cache.descriptors

        def reading(hashes, sizes=None):
            out = descriptors(hashes, sizes)
            read.append(len(out[0]))
            return out

        def handing(self, fn, jobs, *args, **kwargs):
            let_go.extend(job[0].base is None for job in jobs)
            return search(self, fn, jobs, *args, **kwargs)

        monkeypatch.setattr(cache, "descriptors", reading)
        monkeypatch.setattr(Workers, "map", handing)
        workers = Workers(Settings(workers=count), cache)
        try:
            voted, (searched, _) = _keypoint_pairs(hashes, labels, Snapshots(cache, [tmp_path]), workers, never)
            assert searched == len(sets)
            assert (workers._pool is not None) == (count == 2)  # the search did run in the pool
            assert let_go == [count == 2] * count  # searched here, it is still needed here
            if count == 1:  # the whole library for the index, then the queries, whole pictures at a time
                assert read[0] == sum(map(len, sets)) and sum(read[1:]) == read[0]
                assert max(read[1:]) <= block + 95 and len(read) - 1 >= read[0] // (block + 96)
            pairs.append(voted)
        finally:
            workers.close()
            cache.close()
    assert pairs[0] == pairs[1] == pairs[2] == keypoint_pairs(sets, labels) == [(20, n_sets + 1)]


@pytest.mark.parametrize("seed", [3, 9])
@pytest.mark.parametrize("taken", ["10:00:00", "10:00:02"])
def test_a_crop_inside_two_frames_of_a_burst_goes_with_the_one_taken_when_it_was(tmp_path, serial, seed, taken):
    """Two frames of a burst panned by 15%, and a crop that lies inside both, pixel for pixel: it matches
    both about as well (95 and 96), and the capture time it kept says which frame it was cut from."""
    wide = photo(seed, (900, 600))
    frames = {"10:00:00": wide.crop((0, 0, 780, 600)), "10:00:02": wide.crop((120, 0, 900, 600))}
    for n, (at, frame) in enumerate(frames.items()):
        save(frame, tmp_path / f"frame{n}.jpg", quality=92, exif=exif(date=f"2020:05:01 {at}"))
    cut = frames["10:00:02"].crop((0, 30, 660, 600))  # inside the first frame too
    save(cut, tmp_path / "crop.jpg", quality=90, exif=exif(date=f"2020:05:01 {taken}"))
    groups = group_names(scan([tmp_path], serial))
    assert groups == [{"crop.jpg", "frame0.jpg" if taken == "10:00:00" else "frame1.jpg"}]


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("box", [(30, 12, 810, 588), (20, 20, 800, 580)])
def test_a_crop_that_sticks_out_of_the_next_frame_goes_with_its_own(tmp_path, serial, monkeypatch, seed, box):
    """Two frames of a burst panned by 7% in the same second, and a crop of the second that reaches 2-4%
    past the first's edge: it matches both at 97-99, and the capture time cannot tell. It lies wholly
    inside the frame it was cut from, and goes there; without that rule, these went with the first."""
    import dedupe.group

    wide = photo(seed, (900, 600))
    frames = [wide.crop((0, 0, 840, 600)), wide.crop((60, 0, 900, 600))]
    for n, frame in enumerate(frames):
        save(frame, tmp_path / f"frame{n}.jpg", quality=92, exif=exif(date="2020:05:01 10:00:00"))
    save(frames[1].crop(box), tmp_path / "crop.jpg", quality=90, exif=exif(date="2020:05:01 10:00:00"))
    assert group_names(scan([tmp_path], serial)) == [{"crop.jpg", "frame1.jpg"}]
    monkeypatch.setattr(dedupe.group, "WITHIN_MARGIN", 2.0)
    assert group_names(scan([tmp_path], serial)) == [{"crop.jpg", "frame0.jpg"}]


def test_layout_pairs_propose_featureless_crops_and_only_what_a_search_wants():
    """A featureless picture's layout matches a window of its original: the pair of their sets is
    proposed, not the pair with another featureless picture, nor with a detailed photo. Asked only about
    a detailed photo (a search for it), nothing is read but that photo's detail."""
    from dedupe.crops import WHOLE_DETAIL, layout_pairs
    from dedupe.decode import decode
    from dedupe.features.hashes import describe
    from images import cloudy, encode

    pictures = {"original": cloudy(2), "other": cloudy(12), "photo": photo(3, (800, 600))}
    pictures["crop"] = pictures["original"].crop((0, 0, 680, 510))
    cache = Cache(None)
    hashes = list(pictures)
    for h, im in pictures.items():
        cache.put_image(h, ImageInfo(*im.size, "JPEG", False, im.size[0] * im.size[1]),
                        describe(decode(encode(im, quality=90), 10**9)[0]), keypoints=True)
    labels = np.array([0, 1, 2, 3])
    assert cache.details(hashes)[2] >= WHOLE_DETAIL > max(cache.details(hashes)[[0, 1, 3]])
    assert layout_pairs(hashes, labels, cache) == [(0, 3)]
    assert layout_pairs(hashes, labels, cache, np.array([False, False, False, True])) == [(0, 3)]
    assert layout_pairs(hashes, labels, cache, np.array([False, True, False, False])) == []

    def unread(*args):
        raise AssertionError("a search for a detailed photo reads no thumbnail")

    asked, details = [], cache.details
    cache.load = unread
    cache.details = lambda wanted: asked.append(list(wanted)) or details(wanted)
    assert layout_pairs(hashes, labels, cache, np.array([False, False, True, False])) == []
    assert asked == [["photo"]]
    cache.close()


def test_a_rescan_reads_the_detail_of_new_pictures_only(tmp_path, serial, monkeypatch):
    """The layouts of featureless pictures need every picture's detail: a rescan takes those the library
    snapshot's file table holds, and reads from the cache only the new pictures' (reading 100,000 there
    took 1.3 s, 11.6 s with a cold page cache). It finds what a cold scan finds."""
    root, db = tmp_path / "lib", tmp_path / "cache.sqlite"
    library(root)
    scan([root], serial, cache=db)
    save(photo(97, SIZE), root / "p97.jpg")
    read = []
    details = Cache.details

    def reading(self, hashes):
        read.append(len(hashes))
        return details(self, hashes)

    monkeypatch.setattr(Cache, "details", reading)
    again = scan([root], serial, cache=db)
    assert again.stats["keypoints_searched"] == 1 and sum(read) == 1  # the new picture's, once
    monkeypatch.setattr(Cache, "details", details)
    cold = scan([root], serial, cache=tmp_path / "other.sqlite")
    assert sorted(map(sorted, group_names(again))) == sorted(map(sorted, group_names(cold)))


def test_sets_of_copies_are_labelled_in_order_of_their_first_image():
    """_sets: the labels and members the crop stage votes between, from the pairs confirmed so far."""
    from dedupe.crops import _sets

    rng = np.random.default_rng(3)
    for _ in range(50):
        images = sorted(rng.choice(100_000, rng.integers(1, 60), replace=False).tolist())
        evidence = {}
        for _ in range(rng.integers(0, 30)):
            a, b = sorted(rng.choice(images, 2).tolist())
            if a != b:
                evidence[(a, b)] = {}
        labels, members = _sets(images, evidence)
        # expected: images joined by a chain of pairs share a label; labels count up from the first image
        linked = {i: {i} for i in images}
        for a, b in evidence:
            joined = linked[a] | linked[b]
            for x in joined:
                linked[x] = joined
        first = {}
        expected = [first.setdefault(min(linked[i]), len(first)) for i in images]
        assert labels.tolist() == expected
        for label in range(len(first)):
            assert members(label) == [i for i, e in zip(images, expected) if e == label]


def test_votes_counted_in_several_passes_find_the_same_crops(tmp_path, serial, monkeypatch):
    """Past PASS_VOTES votes, each pass counts the pairs whose lower set falls to it: the same crops."""
    import dedupe.crops

    root = tmp_path / "lib"
    library(root)
    once = scan([root], serial, cache=tmp_path / "once.sqlite")
    monkeypatch.setattr(dedupe.crops, "PASS_VOTES", 50)
    passes = scan([root], serial, cache=tmp_path / "passes.sqlite")
    assert {"p81.jpg", "crop81.jpg"} in group_names(passes)
    assert group_names(passes) == group_names(once)
    assert passes.stats["keypoint_pairs"] == once.stats["keypoint_pairs"] > 0
