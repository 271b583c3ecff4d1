"""Remembered decisions: stored by content in the cache, suppressing groups in later scans (after renames
and moves too) until a group gains a file never judged; recorded from plans by `decide` and `apply`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import jsonschema
import pytest
from typer.testing import CliRunner

from dedupe import Settings, report_dict, scan
from dedupe.actions.plan import PlanError, check_plan, make_plan
from dedupe.cache import Cache
from dedupe.cli import app
from dedupe.decisions import Decided, covers, record
from dedupe.report.jsonreport import schema
from images import encode, photo, recompress, resize

A, B, C = "a" * 32, "b" * 32, "c" * 32


@pytest.mark.parametrize(
    "decided, group, covered",
    [
        ((A, B), (A, B), True),
        ((A, B), (B, A), True),  # order does not matter
        ((A, B, C), (A, C), True),  # a group that lost a file stays decided
        ((A, B), (A, B, C), False),  # a file with new content was never judged
        ((A, A, B), (A, B), True),
        ((A, B), (A, A, B), False),  # one more byte-identical copy was never judged either
        ((A, B), (C,), False),
    ],
)
def test_a_decision_covers_a_group_within_its_contents(decided, group, covered):
    assert covers(decided, group) is covered
    assert (Decided([(decided, "keep_all")]).kind_for(list(group)) == "keep_all") is covered


def test_decisions_are_stored_replaced_and_forgotten(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    cache.put_decision((B, A), "not_duplicates")
    cache.put_decision((A, B), "keep_all")  # the same contents decided again: the new kind
    cache.put_decision((A, C), "not_duplicates")
    assert sorted(cache.decisions()) == [((A, B), "keep_all"), ((A, C), "not_duplicates")]
    assert cache.forget_decisions((A,)) == 2  # both cover a group of A alone
    assert cache.decisions() == []
    cache.close()


def test_an_existing_cache_gains_the_table_without_a_rebuild(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = Cache(path)
    cache.put_verdict((A, B, "key"), None)
    cache.close()
    with sqlite3.connect(path) as db:  # a cache written before decisions existed
        db.execute("DROP TABLE decisions")
    cache = Cache(path)
    assert cache.warnings == [] and cache.verdicts([(A, B, "key")]) == {(A, B, "key"): None}
    assert cache.decisions() == []
    cache.close()


def test_a_rebuilt_cache_keeps_its_decisions(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = Cache(path)
    cache.put_decision((A, B), "not_duplicates")
    cache.put_verdict((A, B, "key"), None)
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='2' WHERE key='version'")
    cache = Cache(path)
    assert cache.warnings and "another version" in cache.warnings[0]
    assert cache.verdicts([(A, B, "key")]) == {}  # derived data is rebuilt...
    assert cache.decisions() == [((A, B), "not_duplicates")]  # ...a person's decisions are not
    cache.close()


@pytest.fixture
def library(tmp_path):
    """Two pictures with a copy each, one single; the cache file the scans share."""
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    pic, other = photo(800, (400, 300)), photo(801, (400, 300))
    (root / "trip" / "cat.jpg").write_bytes(encode(pic, quality=92))
    (root / "trip" / "cat_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "trip" / "dog.jpg").write_bytes(encode(other, quality=92))
    (root / "trip" / "dog_q60.jpg").write_bytes(encode(recompress(other, 60)))
    (root / "single.jpg").write_bytes(encode(photo(802, (400, 300))))
    return root, tmp_path / "cache.sqlite"


def _scan(root, cache, **settings):
    return report_dict(scan([root], Settings(workers=1, **settings), cache=cache))


def _group(report, name):
    return next(g for g in report["groups"] if any(m["path"].endswith("/" + name) for m in g["members"]))


def _decide(report, name, decision):
    """A plan in which the group of `name` is decided (as the HTML review writes it)."""
    plan = make_plan(report)
    g = next(g for g in plan["groups"] if any(f["path"].endswith("/" + name) for f in g["files"]))
    g["decision"] = decision
    if decision != "forget":
        for f in g["files"]:
            f["action"] = "keep"
    check_plan(plan)
    return plan


def test_a_decided_group_is_suppressed_even_after_moves_until_it_gains_a_file(library):
    root, cache = library
    first = _scan(root, cache)
    assert len(first["groups"]) == 2 and first["summary"]["suppressed_groups"] == 0
    done = record(_decide(first, "cat.jpg", "not_duplicates"), cache)
    assert done.remembered == {"not_duplicates": 1, "keep_all": 0}

    again = _scan(root, cache)
    assert [g["keeper"].rsplit("/", 1)[1] for g in again["groups"]] == ["dog.jpg"]
    assert again["summary"]["suppressed_groups"] == again["stats"]["suppressed_groups"] == 1
    jsonschema.validate(again, schema())

    (root / "moved").mkdir()
    shutil.move(root / "trip" / "cat_small.jpg", root / "moved" / "renamed.jpg")
    assert _scan(root, cache)["summary"]["suppressed_groups"] == 1  # keyed by content, not path

    (root / "trip" / "cat_copy.jpg").write_bytes((root / "trip" / "cat.jpg").read_bytes())
    gained = _scan(root, cache)  # a new byte-identical copy was never judged: proposed again
    assert gained["summary"]["suppressed_groups"] == 0
    assert {m["path"].rsplit("/", 1)[1] for m in _group(gained, "cat.jpg")["members"]} == {
        "cat.jpg",
        "cat_copy.jpg",
        "renamed.jpg",
    }


def test_ignore_decisions_reports_decided_groups_marked_and_kept_whole(library):
    root, cache = library
    record(_decide(_scan(root, cache), "dog.jpg", "keep_all"), cache)
    shown = _scan(root, cache, ignore_decisions=True)
    jsonschema.validate(shown, schema())
    assert len(shown["groups"]) == 2 and shown["summary"]["suppressed_groups"] == 0
    dog = _group(shown, "dog.jpg")
    assert dog["decision"] == "keep_all" and {m["action"] for m in dog["members"]} == {"keep"}
    assert "decision" not in _group(shown, "cat.jpg")
    assert shown["summary"]["files_to_remove"] == 1  # only the undecided group proposes a removal
    plan = make_plan(shown)  # acting on the report never overrides the decision
    decided = next(g for g in plan["groups"] if g.get("decision"))
    assert decided["decision"] == "keep_all" and {f["action"] for f in decided["files"]} == {"keep"}


def test_forgetting_brings_a_group_back(library):
    root, cache = library
    record(_decide(_scan(root, cache), "cat.jpg", "not_duplicates"), cache)
    shown = _scan(root, cache, ignore_decisions=True)
    assert record(_decide(shown, "cat.jpg", "forget"), cache).forgotten == 1
    assert _scan(root, cache)["summary"]["suppressed_groups"] == 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda g: g.update(decision="maybe"), "decision must be one of"),
        (lambda g: g.update(decision="keep_all"), "decided keep_all but a file is marked remove"),
        (lambda g: (g.update(decision="forget"), g["files"][1].update(content_hash="x")), "content hash"),
        (lambda g: (g["files"][0].update(action="remove"), g["files"][1].update(action="keep")), "and it is kept"),
        (lambda g: g["files"][1].update(relation="keeper"), "one file at most is the keeper"),
        (lambda g: g["files"][1].update(relation="exact"), "is called exact but is not a copy of the keeper"),
        (lambda g: g["files"][1].update(relation="twin"), "relation must be"),
    ],
)
def test_plan_checks_of_decisions_and_relations(library, edit, message):
    root, cache = library
    plan = make_plan(_scan(root, cache))
    group = plan["groups"][0]
    assert [f["relation"] for f in group["files"]] == ["keeper", "near"]
    edit(group)
    with pytest.raises(PlanError, match=message):
        check_plan(plan)


def test_decide_and_apply_commands_remember_decisions(library, tmp_path):
    root, cache = library
    report = _scan(root, cache)
    plan = _decide(report, "cat.jpg", "not_duplicates")
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan))

    dry = CliRunner().invoke(app, ["apply", str(saved), "--cache", str(cache)])
    assert dry.exit_code == 0 and "1 decisions (not duplicates, keep all) would be remembered" in dry.output
    store = Cache(cache)
    assert store.decisions() == []  # a dry run changes nothing, not even the cache
    store.close()

    res = CliRunner().invoke(app, ["decide", str(saved), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert "Remembered 1 decisions (1 not duplicates, 0 keep all), forgot 0" in res.output
    assert all((root / "trip" / n).exists() for n in ("cat.jpg", "cat_small.jpg", "dog.jpg", "dog_q60.jpg"))

    plan = _decide(report, "dog.jpg", "keep_all")
    saved.write_text(json.dumps(plan))
    res = CliRunner().invoke(app, ["apply", str(saved), "--move-to", str(tmp_path / "q"), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert "Remembered 1 decisions (0 not duplicates, 1 keep all)" in res.output
    # the cat group, remembered as not duplicates, is kept whole though this plan (from the report written
    # before that decision) removes one of its files
    assert "remembered as not duplicates" in res.output
    assert (root / "trip" / "cat_small.jpg").exists() and not list((tmp_path / "q").rglob("*.jpg"))
    report_file = tmp_path / "report.json"  # written before the decisions: both its groups kept whole now
    report_file.write_text(json.dumps(report))
    dry = CliRunner().invoke(app, ["apply", str(report_file), "--cache", str(cache)])
    assert "2 kept whole as remembered" in dry.output and "0 files would go" in dry.output, dry.output

    res = CliRunner().invoke(app, ["scan", str(root), "-q", "--workers", "1", "--cache", str(cache)])
    assert "Hidden by earlier decisions: 2 groups (--ignore-decisions shows them)" in res.output
    res = CliRunner().invoke(app, ["cache", "info", "--cache", str(cache)])
    assert "decisions remembered (not duplicates, keep all): 2" in res.output

    res = CliRunner().invoke(app, ["decide", str(tmp_path / "missing.json")])
    assert res.exit_code == 2


def _cat_kept_all(root, cache, tmp_path) -> list[str]:
    """The cat group decided "keep all" through `dedupe decide`; its files' paths."""
    report = _scan(root, cache)
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(_decide(report, "cat.jpg", "keep_all")))
    assert CliRunner().invoke(app, ["decide", str(saved), "--cache", str(cache)]).exit_code == 0
    return [f["path"] for f in _group(report, "cat.jpg")["members"]]


def test_files_a_person_kept_stay_when_their_group_gains_a_copy(library, tmp_path):
    """A group decided "keep all" gained one more copy (the photo imported again): the rescan proposes
    it again, and apply moved the files the person had said to keep with the new one."""
    root, cache = library
    decided = _cat_kept_all(root, cache, tmp_path)
    again = root / "Downloads"
    again.mkdir()
    (again / "cat.jpg").write_bytes((root / "trip" / "cat.jpg").read_bytes())
    later = tmp_path / "later.json"
    later.write_text(json.dumps(_scan(root, cache)))
    res = CliRunner().invoke(app, ["apply", str(later), "--cache", str(cache), "--move-to", str(tmp_path / "q")])
    assert res.exit_code == 0 and "kept as decided (`dedupe decide`) before it gained a file" in res.output, res.output
    assert all(os.path.exists(p) for p in decided)


def test_a_new_copy_byte_identical_to_a_judged_file_never_takes_its_place(library, tmp_path):
    """The new copy, the same bytes as a judged file, became the keeper and the judged file went: every
    copy of a judged content is kept, as which one is new cannot be told from the bytes."""
    root, cache = library
    decided = _cat_kept_all(root, cache, tmp_path)
    (root / "cat.jpg").write_bytes((root / "trip" / "cat.jpg").read_bytes())  # a shorter path: the keeper
    later = tmp_path / "later.json"
    later.write_text(json.dumps(_scan(root, cache)))
    res = CliRunner().invoke(app, ["apply", str(later), "--cache", str(cache), "--move-to", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    assert all(os.path.exists(p) for p in decided) and (root / "cat.jpg").exists()
