// Renders the groups of a dedupe report from the JSON embedded in the page, one page at a time, and lets a
// person review them: keep/remove per file, "not duplicates" and "keep all" per group, by mouse or keys.
// Choices stay in the browser's local storage under the report's id; "Save plan" downloads them as a plan
// that `dedupe apply` carries out. Every string from the report goes into the page as text (textContent),
// never as markup.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 50;
  const STORE = "dedupe-review:" + data.report_id;
  const KINDS = ["not_duplicates", "keep_all"];
  const LABELS = { not_duplicates: "Not duplicates", keep_all: "Keep all" };
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const button = (cls, text, title) => {
    const b = el("button", cls, text);
    b.type = "button";
    if (title) b.title = title;
    return b;
  };
  const bytes = (n) => {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return i === 0 ? n + " bytes" : n.toFixed(1) + " " + units[i];
  };
  const fileUrl = (path) =>
    "file://" + path.split("/").map((part) => encodeURIComponent(part)).join("/");
  const status = (text) => { document.getElementById("review-status").textContent = text; };

  // One list of reviewable items: duplicate groups, then similar shots (never proposed for removal).
  const items = data.groups.map((g) => ({
    kind: g.kind, group: g, bytes: g.bytes_freed,
    similarity: Math.min(...g.members.map((m) => m.score)),
    size: Math.max(...g.members.map((m) => Number(m.size))),
    keeper: g.keeper, haystack: g.members.map((m) => m.path.toLowerCase()).join("\n"),
  }));
  for (const s of data.similar) {
    items.push({ kind: "similar", similar: s, bytes: 0, similarity: s.score, size: 0, keeper: s.a,
                 haystack: (s.a + "\n" + s.b).toLowerCase() });
  }
  const groupItems = new Map(items.filter((it) => it.group).map((it) => [it.group.id, it]));

  // --- choices: per group {decision: null | one of KINDS, remove: Set of member indexes} ---------------
  // A decision shows every file kept and hides `remove`, which comes back when the decision is undone.
  // Only groups that differ from the report's proposal are kept, in `changed` and in local storage.
  const proposals = new Map();
  function proposal(g) {
    if (!proposals.has(g.id)) {
      proposals.set(g.id, { decision: g.decision || null,
                            remove: new Set(g.members.flatMap((m, i) => (m.action === "remove" ? [i] : []))) });
    }
    return proposals.get(g.id);
  }
  const changed = new Map();
  const choiceOf = (g) => changed.get(g.id) || proposal(g);
  const removes = (c, i) => !c.decision && c.remove.has(i);
  const same = (a, b) =>
    a.decision === b.decision && a.remove.size === b.remove.size && [...a.remove].every((i) => b.remove.has(i));

  function setChoice(g, c) {
    if (same(c, proposal(g))) changed.delete(g.id);
    else changed.set(g.id, c);
  }

  function storage() {
    try { return window.localStorage; } catch (e) { return null; } // a browser that refuses it for file://
  }

  function persist() {
    const out = {};
    for (const [id, c] of changed) out[id] = { d: c.decision, r: [...c.remove] };
    try {
      storage().setItem(STORE, JSON.stringify({ v: 1, groups: out }));
    } catch (e) {
      status("Your choices cannot be kept in this browser (" + e.message + "); save the plan before closing.");
    }
  }

  function restore() {
    let saved = null;
    try { saved = JSON.parse(storage().getItem(STORE)); } catch (e) { return; }
    if (!saved || saved.v !== 1 || typeof saved.groups !== "object") return;
    for (const [id, c] of Object.entries(saved.groups)) {
      const item = groupItems.get(Number(id));
      if (!item || !c) continue;
      const g = item.group;
      const remove = new Set((Array.isArray(c.r) ? c.r : []).filter((i) => Number.isInteger(i) && i >= 0 && i < g.members.length));
      const decision = KINDS.includes(c.d) ? c.d : null;
      if (remove.size < g.members.length) setChoice(g, { decision, remove });
    }
  }

  function toggleMember(g, i) {
    const c = choiceOf(g);
    const remove = c.decision ? new Set() : new Set(c.remove); // from what a decided group shows: all kept
    if (remove.has(i)) remove.delete(i); else remove.add(i);
    if (remove.size >= g.members.length) {
      status("Group " + g.id + ": at least one copy must stay.");
      return;
    }
    setChoice(g, { decision: null, remove });
    status("");
  }

  function toggleDecision(g, kind) {
    const c = choiceOf(g);
    setChoice(g, { decision: c.decision === kind ? null : kind, remove: new Set(c.remove) });
  }

  function totals() {
    let files = 0, size = 0, decided = 0;
    for (const g of data.groups) {
      const c = choiceOf(g);
      if (c.decision) { decided += 1; continue; }
      for (const i of c.remove) { files += 1; size += Number(g.members[i].size); }
    }
    document.getElementById("total-remove").textContent = files.toLocaleString("en-US");
    document.getElementById("total-bytes").textContent = bytes(size);
    document.getElementById("total-decided").textContent = decided.toLocaleString("en-US");
    return { files, size, decided };
  }

  // --- the plan: dedupe's plan format (dedupe/actions/plan.py), written as text -------------------------
  // size, mtime_ns, device and inode arrive as decimal text and go back as JSON numbers digit for digit:
  // a JavaScript number would round an mtime_ns, and apply would take every file for changed.
  const INT = /^-?[0-9]+$/;
  function planFile(m, action, relation) {
    const ints = ["size", "mtime_ns", "device", "inode"].map((k) => {
      if (!INT.test(m[k])) throw new Error(m.path + ": " + k + " is not a whole number");
      return '"' + k + '": ' + m[k];
    });
    return '{"path": ' + JSON.stringify(m.path) + ', "action": "' + action + '", "relation": "' + relation +
      '", ' + ints.join(", ") + ', "content_hash": ' + JSON.stringify(m.content_hash) + "}";
  }

  function planGroup(g) {
    const c = choiceOf(g);
    const actions = g.members.map((m, i) => (removes(c, i) ? "remove" : "keep"));
    // the keeper: the proposed one if it stays, else the first file kept; "exact" is said against it
    let k = g.members.findIndex((m, i) => m.relation === "keeper" && actions[i] === "keep");
    if (k < 0) k = actions.indexOf("keep");
    if (k < 0) throw new Error("group " + g.id + ": every file would go");
    const files = g.members.map((m, i) => planFile(m, actions[i], i === k ? "keeper"
      : (m.content_hash === g.members[k].content_hash ? "exact" : "near")));
    const decision = c.decision || (g.decision ? "forget" : null); // undoing a remembered decision forgets it
    return '{"id": ' + g.id + ', "kind": ' + JSON.stringify(g.kind) +
      (decision ? ', "decision": "' + decision + '"' : "") + ', "files": [\n   ' + files.join(",\n   ") + "]}";
  }

  function planText() {
    return '{"plan_version": 1,\n "report_id": ' + JSON.stringify(data.report_id) +
      ',\n "source": ' + JSON.stringify(decodeURIComponent(location.pathname)) +
      ',\n "roots": ' + JSON.stringify(data.roots) +
      ',\n "groups": [\n  ' + data.groups.map(planGroup).join(",\n  ") + "\n ]\n}\n";
  }

  function savePlan() {
    let text;
    try { text = planText(); } catch (e) { status("Plan not saved: " + e.message); return; }
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const a = el("a");
    a.href = url;
    a.download = "plan.json";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const t = totals();
    status("Saved plan.json: " + t.files + " files to remove (" + bytes(t.size) + "), " + t.decided +
           " groups decided. Next: dedupe apply plan.json (a dry run; --move-to DIR or --trash to act).");
  }

  // --- rendering ----------------------------------------------------------------------------------------
  function transformText(t) {
    const words = [];
    if (t.rotated) words.push("rotated " + t.rotated + "\u00b0");
    if (t.mirrored) words.push("mirrored");
    if (t.crop) words.push((t.crop.of === "member" ? "crop of the keeper at " : "the keeper is a crop of it at ") +
                           "[" + t.crop.box.join(", ") + "]");
    if (t.straightened) words.push("straightened " + t.straightened + "\u00b0");
    if (t["frame removed"]) words.push("frame removed");
    if (t["tones matched"]) words.push("tones matched");
    if (t.aligned && !t.crop) words.push("aligned");
    if (t.inliers) words.push(t.inliers + " keypoint inliers");
    return words.join(", ");
  }

  function member(g, i, c, asset) {
    const m = g.members[i];
    const action = removes(c, i) ? "remove" : "keep";
    const box = el("div", "member " + action);
    box.dataset.relation = m.relation;
    box.dataset.index = i;
    box.tabIndex = -1;
    const img = el("img", "thumb");
    img.loading = "lazy";
    img.alt = "thumbnail";
    if (asset && asset.thumb) img.src = asset.thumb;
    const open = el("a");
    open.href = fileUrl(m.path);
    open.title = "open the file";
    open.append(img);
    box.append(open);
    const head = el("div");
    const toggle = button("toggle badge " + action, action, action === "keep" ? "keep: click to remove (x)" : "remove: click to keep (x)");
    toggle.addEventListener("click", () => { toggleMember(g, i); changedGroup(g, i); });
    head.append(toggle, " ");
    head.append(el("span", "meta", m.relation === "exact" ? "byte-identical" : m.relation === "keeper" ? "proposed keeper" : m.relation));
    box.append(head);
    const link = el("a", "path", m.path);
    link.href = fileUrl(m.path);
    box.append(link);
    const facts = [m.width + "\u00d7" + m.height, bytes(Number(m.size)), m.format];
    if (m.exif_date) facts.push(m.exif_date);
    if (m.camera) facts.push(m.camera);
    box.append(el("div", "facts", facts.join(" \u00b7 ")));
    if (m.relation !== "keeper") {
      const ev = "score " + m.score + ", SSIM " + Number(m.ssim).toFixed(3) + ", hash distance " + m.hash_distance;
      const t = transformText(m.transform || {});
      box.append(el("div", "evidence", t ? ev + "; " + t : ev));
    }
    if (asset && asset.diff) {
      const fig = el("figure", "diff");
      fig.style.margin = "6px 0 0";
      const dimg = el("img");
      dimg.loading = "lazy";
      dimg.alt = "where it differs from the keeper";
      dimg.src = asset.diff;
      const big = el("a");
      big.href = asset.diff;
      big.title = "open the difference view full size";
      big.append(dimg);
      fig.append(big, el("figcaption", null, asset.boxes
        ? "red boxes: " + asset.boxes + " region(s) differing from the keeper"
        : "no region differs beyond re-encoding"));
      box.append(fig);
    }
    box.addEventListener("click", () => { cursor = { gid: g.id, member: i }; showCursor(false); });
    return box;
  }

  function groupCard(item) {
    const card = el("section", "group");
    card.dataset.kind = item.kind;
    const head = el("div", "group-head");
    head.append(el("span", "badge " + item.kind, item.kind === "similar" ? "similar shots" : item.kind));
    if (item.group) {
      const g = item.group;
      const c = choiceOf(g);
      card.dataset.group = g.id;
      card.tabIndex = -1;
      if (c.decision) card.classList.add("decided");
      const gone = [...c.remove].filter((i) => removes(c, i));
      head.append(el("b", null, "Group " + g.id));
      head.append(el("span", "group-total", g.members.length + " files: " + (c.decision ? "all kept"
        : gone.length + " to remove, freeing " + bytes(gone.reduce((n, i) => n + Number(g.members[i].size), 0)))));
      head.append(el("span", "meta", "keeper: " + g.keeper_reason));
      for (const kind of KINDS) {
        const b = button("decide " + kind, LABELS[kind], kind === "not_duplicates"
          ? "these are different pictures: keep them all and do not show them again (n)"
          : "these are copies, but keep every one and do not show them again (a)");
        b.setAttribute("aria-pressed", String(c.decision === kind));
        b.addEventListener("click", () => { toggleDecision(g, kind); changedGroup(g, cursor.gid === g.id ? cursor.member : 0); });
        head.append(b);
      }
      card.append(head);
      if (c.decision) {
        card.append(el("p", "decision-note", (c.decision === "not_duplicates" ? "Not duplicates" : "Keep all") +
          ": every file stays, and once the plan is recorded (dedupe decide or apply) later scans do not show this group" +
          (g.decision ? " (decided before)." : ".")));
      }
      const row = el("div", "members");
      g.members.forEach((m, i) => row.append(member(g, i, c, (data.assets[g.id] || [])[i])));
      card.append(row);
    } else {
      const s = item.similar;
      head.append(el("span", null, "different photos of one scene: " + Math.round(s.overlap * 100) +
                     "% overlap, score " + s.score + ", " + s.inliers + " keypoint inliers; never proposed for removal"));
      card.append(head);
      const row = el("div", "members");
      for (const [path, asset] of [[s.a, s.assets && s.assets[0]], [s.b, s.assets && s.assets[1]]]) {
        const box = el("div", "member");
        const img = el("img", "thumb");
        img.loading = "lazy";
        img.alt = "thumbnail";
        if (asset) img.src = asset;
        const link = el("a", "path", path);
        link.href = fileUrl(path);
        box.append(img, link);
        row.append(box);
      }
      card.append(row);
    }
    return card;
  }

  const state = { filter: "", kind: "all", sort: "bytes", page: 0 };
  const sorters = {
    bytes: (a, b) => b.bytes - a.bytes || a.keeper.localeCompare(b.keeper),
    similarity: (a, b) => a.similarity - b.similarity || a.keeper.localeCompare(b.keeper),
    size: (a, b) => b.size - a.size || a.keeper.localeCompare(b.keeper),
    path: (a, b) => a.keeper.localeCompare(b.keeper),
  };
  let cursor = { gid: null, member: 0 }; // the group and file the keys act on
  let pageSlice = [], pages = 1;
  const cards = new Map();

  function visible() {
    const needle = state.filter.toLowerCase();
    return items
      .filter((it) => state.kind === "all" || it.kind === state.kind)
      .filter((it) => !needle || it.haystack.includes(needle))
      .sort(sorters[state.sort]);
  }

  function render() {
    const shown = visible();
    pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const list = document.getElementById("groups");
    list.replaceChildren();
    cards.clear();
    pageSlice = shown.slice(state.page * PAGE, (state.page + 1) * PAGE);
    if (!pageSlice.length) list.append(el("p", "empty", "Nothing matches."));
    for (const it of pageSlice) {
      const card = groupCard(it);
      if (it.group) cards.set(it.group.id, card);
      list.append(card);
    }
    document.getElementById("page-info").textContent =
      shown.length + " shown, page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    if (!cards.has(cursor.gid)) cursor = { gid: null, member: 0 };
    showCursor(false);
  }

  // Marks the cursor's group and file; with `focus`, moves the keyboard focus there and into view.
  function showCursor(focus) {
    for (const node of document.querySelectorAll("#groups .current")) node.classList.remove("current");
    const card = cards.get(cursor.gid);
    if (!card) return;
    card.classList.add("current");
    const box = card.querySelectorAll(".member")[cursor.member];
    if (box) box.classList.add("current");
    if (focus) {
      (box || card).focus({ preventScroll: true });
      (box || card).scrollIntoView({ block: "nearest" });
    }
  }

  // A group's choice changed: draw its card again, the totals, keep the choice, focus the file.
  function changedGroup(g, memberIndex) {
    persist();
    const old = cards.get(g.id);
    if (old) {
      const card = groupCard(groupItems.get(g.id));
      old.replaceWith(card);
      cards.set(g.id, card);
    }
    totals();
    cursor = { gid: g.id, member: memberIndex };
    showCursor(true);
  }

  function pageGroups() { return pageSlice.filter((it) => it.group).map((it) => it.group); }

  function moveGroup(delta) {
    const ids = pageGroups().map((g) => g.id);
    const at = ids.indexOf(cursor.gid);
    const next = at < 0 ? (delta > 0 ? 0 : ids.length - 1) : at + delta;
    if (next >= ids.length || next < 0) {
      const page = state.page + (next < 0 ? -1 : 1);
      if (page < 0 || page >= pages) return;
      state.page = page;
      render();
      const now = pageGroups();
      if (!now.length) return;
      cursor = { gid: now[next < 0 ? now.length - 1 : 0].id, member: 0 };
    } else {
      cursor = { gid: ids[next], member: 0 };
    }
    showCursor(true);
  }

  function current() {
    const item = groupItems.get(cursor.gid);
    if (!item || !cards.has(cursor.gid)) { moveGroup(1); return null; }
    return item.group;
  }

  function moveMember(delta) {
    const g = current();
    if (!g) return;
    cursor.member = Math.max(0, Math.min(g.members.length - 1, cursor.member + delta));
    showCursor(true);
  }

  const help = document.getElementById("help");
  let helpReturn = null;
  function openHelp() {
    helpReturn = document.activeElement;
    help.hidden = false;
    document.getElementById("help-close").focus();
  }
  function closeHelp() {
    help.hidden = true;
    if (helpReturn && helpReturn.isConnected) helpReturn.focus();
  }

  const onCurrent = (fn) => () => { const g = current(); if (g) fn(g); };
  const KEYS = {
    j: () => moveGroup(1), ArrowDown: () => moveGroup(1),
    k: () => moveGroup(-1), ArrowUp: () => moveGroup(-1),
    l: () => moveMember(1), ArrowRight: () => moveMember(1),
    h: () => moveMember(-1), ArrowLeft: () => moveMember(-1),
    x: onCurrent((g) => { toggleMember(g, cursor.member); changedGroup(g, cursor.member); }),
    " ": onCurrent((g) => { toggleMember(g, cursor.member); changedGroup(g, cursor.member); }),
    n: onCurrent((g) => { toggleDecision(g, "not_duplicates"); changedGroup(g, cursor.member); }),
    a: onCurrent((g) => { toggleDecision(g, "keep_all"); changedGroup(g, cursor.member); }),
    p: onCurrent((g) => { changed.delete(g.id); changedGroup(g, cursor.member); }),
    "?": openHelp,
  };

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    const t = e.target;
    if (!help.hidden) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); closeHelp(); }
      return;
    }
    if (t.closest && t.closest("input, select, textarea")) return;
    if (t.tagName === "BUTTON" && (e.key === " " || e.key === "Enter")) return; // the button's own click
    const fn = KEYS[e.key];
    if (!fn) return;
    e.preventDefault();
    fn();
  });

  const on = (id, ev, fn) => document.getElementById(id).addEventListener(ev, fn);
  on("filter", "input", (e) => { state.filter = e.target.value; state.page = 0; render(); });
  on("kind", "change", (e) => { state.kind = e.target.value; state.page = 0; render(); });
  on("sort", "change", (e) => { state.sort = e.target.value; state.page = 0; render(); });
  on("prev", "click", () => { state.page -= 1; render(); window.scrollTo(0, 0); });
  on("next", "click", () => { state.page += 1; render(); window.scrollTo(0, 0); });
  on("accept-page", "click", () => {
    for (const g of pageGroups()) changed.delete(g.id);
    persist(); render(); totals();
    status("This page is back to the proposals.");
  });
  on("keep-page", "click", () => {
    for (const g of pageGroups()) setChoice(g, { decision: "keep_all", remove: new Set(choiceOf(g).remove) });
    persist(); render(); totals();
    status("Every group on this page: keep all.");
  });
  on("save-plan", "click", savePlan);
  on("help-open", "click", openHelp);
  on("help-close", "click", closeHelp);
  help.addEventListener("click", (e) => { if (e.target === help) closeHelp(); });

  restore();
  render();
  totals();
  document.body.dataset.ready = "1";
})();
