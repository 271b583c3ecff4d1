"""Reviewing in the browser: choices by mouse and keys, totals, choices kept across reloads, the plan saved
from the page and carried out by `dedupe apply`, and "not duplicates" remembered by later scans.

Headless Chromium through Playwright, pages from file:// under their content security policy (the
`browser` fixture of conftest.py: skipped without Chromium, except in CI).
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from typer.testing import CliRunner

from dedupe import Settings, report_dict, scan
from dedupe.actions.plan import check_plan
from dedupe.cli import app
from dedupe.report.html import human_bytes, write_html
from images import encode, photo, recompress, resize, watermark

FILES = (
    "2020/trip_0.jpg",
    "2020/trip_0_small.jpg",
    "Downloads/trip_0_marked.jpg",
    "2020/trip_1.jpg",
    "Downloads/trip_1_small.jpg",
    "2020/cat.jpg",
    "Backup/cat.jpg",
    "single.jpg",
)


def make_library(root):
    """Three groups: a picture with two edited copies, one with a small copy, one with a byte-identical copy."""
    for folder in ("2020", "Downloads", "Backup"):
        (root / folder).mkdir(parents=True)
    for n in range(2):
        pic = photo(900 + n, (480, 360))
        (root / "2020" / f"trip_{n}.jpg").write_bytes(encode(pic, quality=92))
        (root / ("Downloads" if n else "2020") / f"trip_{n}_small.jpg").write_bytes(
            encode(resize(recompress(pic, 70), 0.5))
        )
        if n == 0:
            (root / "Downloads" / "trip_0_marked.jpg").write_bytes(encode(watermark(pic)))
    (root / "2020" / "cat.jpg").write_bytes(encode(photo(910, (400, 300)), quality=90))
    (root / "Backup" / "cat.jpg").write_bytes((root / "2020" / "cat.jpg").read_bytes())
    (root / "single.jpg").write_bytes(encode(photo(920, (400, 300))))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")) == sorted(FILES)


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def scan_to(root, cache, out, *flags):
    """`dedupe scan` with a JSON and an HTML report in `out`; (report, page, printed summary)."""
    out.mkdir(exist_ok=True)
    printed = run("scan", root, "-q", "--workers", 1, "--cache", cache, "--json", out / "r.json", "--html",
                  out / "r.html", *flags)
    return json.loads((out / "r.json").read_text()), out / "r.html", printed


def open_page(browser, html):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def group_of(report, name):
    return next(g for g in report["groups"] if any(m["path"].endswith("/" + name) for m in g["members"]))


def card(page, group):
    return page.locator(f"section.group[data-group='{group['id']}']")


def member(page, path):
    return page.locator("section.group .member", has=page.locator("a.path", has_text=path))


def totals(page):
    return {k: page.locator(f"#total-{k}").inner_text() for k in ("remove", "bytes", "decided")}


def current(page):
    return page.locator("section.group.current").get_attribute("data-group")


def go_to(page, group):
    """Up to the first group with k, then down with j until the keys' cursor is on `group`."""
    for _ in range(4):
        page.keyboard.press("k")
    for _ in range(4):
        if current(page) == str(group["id"]):
            return
        page.keyboard.press("j")
    raise AssertionError(f"j never reached group {group['id']}")


def test_review_save_apply_then_not_duplicates_are_remembered(browser, tmp_path):
    root, cache, q = tmp_path / "photos", tmp_path / "cache.sqlite", tmp_path / "quarantine"
    make_library(root)
    report, html, _ = scan_to(root, cache, tmp_path / "out1")
    assert len(report["groups"]) == 3 and report["summary"]["files_to_remove"] == 4
    trip0, trip1, cat = (group_of(report, n) for n in ("trip_0.jpg", "trip_1.jpg", "cat.jpg"))
    page, errors = open_page(browser, html)
    assert totals(page) == {
        "remove": "4",
        "bytes": human_bytes(report["summary"]["bytes_freed"]),
        "decided": "0",
    }

    # keys: to the trip_0 group, on to its second file, keep it
    go_to(page, trip0)
    page.keyboard.press("l")
    spared = trip0["members"][1]
    assert page.evaluate("document.activeElement.classList.contains('current')")  # focus is visible
    assert member(page, spared["path"]).get_attribute("class") == "member remove current"
    page.keyboard.press("x")
    assert member(page, spared["path"]).get_attribute("class") == "member keep current"

    # mouse: the last copy of trip_1 cannot go; swap what stays instead
    keeper1, small1 = (next(m for m in trip1["members"] if m["relation"] == r) for r in ("keeper", "near"))
    member(page, keeper1["path"]).locator("button.toggle").click()
    assert "at least one copy must stay" in page.locator("#review-status").inner_text()
    assert member(page, keeper1["path"]).locator("button.toggle").inner_text().lower() == "keep"
    member(page, small1["path"]).locator("button.toggle").click()
    member(page, keeper1["path"]).locator("button.toggle").click()
    assert member(page, keeper1["path"]).locator("button.toggle").inner_text().lower() == "remove"

    # keys: the cat group is not duplicates
    go_to(page, cat)
    page.keyboard.press("n")
    assert card(page, cat).locator("button.decide.not_duplicates").get_attribute("aria-pressed") == "true"

    going = [m for m in trip0["members"] if m["relation"] != "keeper" and m is not spared] + [keeper1]
    expected = {"remove": str(len(going)), "bytes": human_bytes(sum(m["size"] for m in going)), "decided": "1"}
    assert totals(page) == expected

    # a reload keeps every choice
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert totals(page) == expected
    assert card(page, cat).locator("button.decide.not_duplicates").get_attribute("aria-pressed") == "true"
    assert "member keep" in member(page, spared["path"]).get_attribute("class")

    # the plan saved from the page is what apply reads, identities exact to the nanosecond
    with page.expect_download() as download:
        page.click("#save-plan")
    assert download.value.suggested_filename == "plan.json"
    plan_file = tmp_path / "plan.json"
    download.value.save_as(plan_file)
    assert "dedupe apply plan.json" in page.locator("#review-status").inner_text()
    plan = json.loads(plan_file.read_text())
    check_plan(plan)
    scanned = {m["path"]: m for g in report["groups"] for m in g["members"]}
    for g in plan["groups"]:
        for f in g["files"]:
            assert {k: f[k] for k in ("size", "mtime_ns", "device", "inode", "content_hash")} == {
                k: scanned[f["path"]][k] for k in ("size", "mtime_ns", "device", "inode", "content_hash")
            }
    g1 = next(g for g in plan["groups"] if g["id"] == trip1["id"])
    assert [(f["path"], f["relation"]) for f in g1["files"] if f["action"] == "keep"] == [(small1["path"], "keeper")]
    assert next(g for g in plan["groups"] if g["id"] == cat["id"])["decision"] == "not_duplicates"

    printed = run("apply", plan_file, "--move-to", q, "--cache", cache, "--journal-dir", tmp_path / "journals")
    assert "Remembered 1 decisions (1 not duplicates, 0 keep all)" in printed
    gone = {os.path.relpath(m["path"], root) for m in going}
    for name in FILES:
        assert (root / name).exists() == (name not in gone), name
        assert (q / name).exists() == (name in gone), name
    assert errors == []

    # a rescan hides the cat group and says so, in the summary, the JSON report and the page
    report2, html2, printed = scan_to(root, cache, tmp_path / "out2")
    assert "Hidden by earlier decisions: 1 groups" in printed
    assert report2["summary"]["suppressed_groups"] == 1
    assert not any(m["path"].endswith("cat.jpg") for g in report2["groups"] for m in g["members"])
    page2, _ = open_page(browser, html2)
    assert page2.locator("#total-suppressed").inner_text() == "1"
    assert "cat.jpg" not in page2.locator("#groups").inner_text()

    # --ignore-decisions shows it again, decided; undoing the decision in the page and `decide` forget it
    report3, html3, printed = scan_to(root, cache, tmp_path / "out3", "--ignore-decisions")
    assert "Decided earlier, shown because of --ignore-decisions: 1 groups" in printed
    cat3 = group_of(report3, "cat.jpg")
    assert cat3["decision"] == "not_duplicates" and report3["summary"]["suppressed_groups"] == 0
    page3, _ = open_page(browser, html3)
    assert page3.locator("#total-decided").inner_text() == "1"
    toggle = card(page3, cat3).locator("button.decide.not_duplicates")
    assert toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    assert card(page3, cat3).locator("button.decide.not_duplicates").get_attribute("aria-pressed") == "false"
    with page3.expect_download() as download:
        page3.click("#save-plan")
    download.value.save_as(plan_file)
    assert next(g for g in json.loads(plan_file.read_text())["groups"] if g["id"] == cat3["id"])["decision"] == "forget"
    assert "forgot 1" in run("decide", plan_file, "--cache", cache)
    report4, _, _ = scan_to(root, cache, tmp_path / "out4")
    assert report4["summary"]["suppressed_groups"] == 0 and "decision" not in group_of(report4, "cat.jpg")


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A report of the generated library and its page; 60 groups (the same ones over again) in a second
    page without images, to cross from one page of 50 groups to the next."""
    root = tmp_path_factory.mktemp("lib")
    make_library(root)
    report = report_dict(scan([root], Settings(workers=1)))
    out = tmp_path_factory.mktemp("out")
    write_html(report, out / "r.html", workers=1)
    many = copy.deepcopy(report)
    many["groups"] = [{**report["groups"][n % 3], "id": n + 1} for n in range(60)]
    write_html(many, out / "many.html", images=False)
    return report, out / "r.html", out / "many.html"


def test_bulk_actions_keep_all_key_and_help(browser, reviewed):
    report, html, _ = reviewed
    page, errors = open_page(browser, html)
    page.click("#keep-page")
    assert totals(page) == {"remove": "0", "bytes": "0 bytes", "decided": "3"}
    assert page.locator("button.decide.keep_all[aria-pressed='true']").count() == 3
    assert page.locator(".member.remove").count() == 0
    page.click("#accept-page")
    assert totals(page)["remove"] == "4" and totals(page)["decided"] == "0"

    g = report["groups"][0]
    go_to(page, g)
    page.keyboard.press("a")
    assert card(page, g).locator("button.decide.keep_all").get_attribute("aria-pressed") == "true"
    assert "Keep all: every file stays" in card(page, g).inner_text()
    page.keyboard.press("n")  # switches to the other decision
    assert card(page, g).locator("button.decide.keep_all").get_attribute("aria-pressed") == "false"
    assert card(page, g).locator("button.decide.not_duplicates").get_attribute("aria-pressed") == "true"
    page.keyboard.press("x")  # a file toggled in a decided group leaves the decision, from "all kept"
    assert card(page, g).locator("button.decide[aria-pressed='true']").count() == 0
    assert card(page, g).locator(".member.remove").count() == 1
    page.keyboard.press("p")  # back to the proposal
    assert card(page, g).locator(".member.remove").count() == len(g["members"]) - 1

    assert page.locator("#help").is_hidden()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible() and "not duplicates" in page.locator("#help").inner_text()
    page.keyboard.press("j")  # keys go to the help while it is open
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden() and current(page) == str(g["id"])
    page.locator("#filter").press_sequentially("xn")  # typing in the filter is not a key command
    assert page.locator("#filter").input_value() == "xn" and totals(page)["remove"] == "4"
    assert totals(page)["decided"] == "0"
    assert errors == []


def test_keys_cross_pages(browser, reviewed):
    _, _, many = reviewed
    page, errors = open_page(browser, many)
    assert page.locator("section.group").count() == 50
    for _ in range(51):
        page.keyboard.press("j")
    assert "page 2 of 2" in page.locator("#page-info").inner_text()
    assert page.locator("section.group.current").count() == 1
    page.keyboard.press("k")
    assert "page 1 of 2" in page.locator("#page-info").inner_text()
    assert page.locator("section.group").last.get_attribute("class") == "group current"
    assert errors == []


def _page_data(html):
    text = html.read_text("utf-8")
    start = text.index('<script id="report-data" type="application/json">') + len(
        '<script id="report-data" type="application/json">'
    )
    return json.loads(text[start : text.index("</script>", start)])


def test_the_page_keeps_the_report_id_and_exact_identities(reviewed, tmp_path):
    report, html, _ = reviewed
    data = _page_data(html)
    assert data["report_id"] == report["report_id"] and data["roots"] == report["roots"]
    m, shown = report["groups"][0]["members"][0], data["groups"][0]["members"][0]
    assert [shown[k] for k in ("size", "mtime_ns", "device", "inode")] == [
        str(m[k]) for k in ("size", "mtime_ns", "device", "inode")
    ]
    write_html(report, tmp_path / "again.html", images=False)  # `dedupe report` again: the same choices
    assert _page_data(tmp_path / "again.html")["report_id"] == report["report_id"]
    old = {k: v for k, v in report.items() if k != "report_id"}  # a report from before ids
    ids = set()
    for name in ("a.html", "b.html"):
        write_html(old, tmp_path / name, images=False)
        ids.add(_page_data(tmp_path / name)["report_id"])
    assert len(ids) == 1 and len(ids.pop()) == 32
