// Renders the groups of a dedupe report from the JSON embedded in the page, one page at a time.
// Every string from the report goes into the page as text (textContent), never as markup.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 50;
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const bytes = (n) => {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return i === 0 ? n + " bytes" : n.toFixed(1) + " " + units[i];
  };
  const fileUrl = (path) =>
    "file://" + path.split("/").map((part) => encodeURIComponent(part)).join("/");

  // One list of reviewable items: duplicate groups, then similar shots (never proposed for removal).
  const items = data.groups.map((g) => ({
    kind: g.kind, group: g, bytes: g.bytes_freed,
    similarity: Math.min(...g.members.map((m) => m.score)),
    size: Math.max(...g.members.map((m) => m.size)),
    keeper: g.keeper, haystack: g.members.map((m) => m.path.toLowerCase()).join("\n"),
  }));
  for (const s of data.similar) {
    items.push({ kind: "similar", similar: s, bytes: 0, similarity: s.score, size: 0, keeper: s.a,
                 haystack: (s.a + "\n" + s.b).toLowerCase() });
  }

  const state = { filter: "", kind: "all", sort: "bytes", page: 0 };
  const sorters = {
    bytes: (a, b) => b.bytes - a.bytes || a.keeper.localeCompare(b.keeper),
    similarity: (a, b) => a.similarity - b.similarity || a.keeper.localeCompare(b.keeper),
    size: (a, b) => b.size - a.size || a.keeper.localeCompare(b.keeper),
    path: (a, b) => a.keeper.localeCompare(b.keeper),
  };

  function transformText(t) {
    const words = [];
    if (t.rotated) words.push("rotated " + t.rotated + "\u00b0");
    if (t.mirrored) words.push("mirrored");
    if (t.crop) words.push((t.crop.of === "member" ? "crop of the keeper at " : "the keeper is a crop of it at ") +
                           "[" + t.crop.box.join(", ") + "]");
    if (t["frame removed"]) words.push("frame removed");
    if (t.aligned && !t.crop) words.push("aligned");
    if (t.inliers) words.push(t.inliers + " keypoint inliers");
    return words.join(", ");
  }

  function member(m, asset) {
    const box = el("div", "member " + m.action);
    box.dataset.relation = m.relation;
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
    head.append(el("span", "badge " + m.action, m.action === "keep" ? "keep" : "remove"));
    head.append(" ");
    head.append(el("span", "meta", m.relation === "exact" ? "byte-identical" : m.relation));
    box.append(head);
    const link = el("a", "path", m.path);
    link.href = fileUrl(m.path);
    box.append(link);
    const facts = [m.width + "\u00d7" + m.height, bytes(m.size), m.format];
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
    return box;
  }

  function groupCard(item) {
    const card = el("section", "group");
    card.dataset.kind = item.kind;
    const head = el("div", "group-head");
    head.append(el("span", "badge " + item.kind, item.kind === "similar" ? "similar shots" : item.kind));
    if (item.group) {
      const g = item.group;
      card.dataset.group = g.id;
      head.append(el("b", null, "Group " + g.id));
      head.append(el("span", null, g.members.length + " files, " + bytes(g.bytes_freed) + " would be freed"));
      head.append(el("span", "meta", "keeper: " + g.keeper_reason));
      card.append(head);
      const row = el("div", "members");
      g.members.forEach((m, i) => row.append(member(m, (data.assets[g.id] || [])[i])));
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

  function visible() {
    const needle = state.filter.toLowerCase();
    return items
      .filter((it) => state.kind === "all" || it.kind === state.kind)
      .filter((it) => !needle || it.haystack.includes(needle))
      .sort(sorters[state.sort]);
  }

  function render() {
    const shown = visible();
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const list = document.getElementById("groups");
    list.replaceChildren();
    const slice = shown.slice(state.page * PAGE, (state.page + 1) * PAGE);
    if (!slice.length) list.append(el("p", "empty", "Nothing matches."));
    for (const it of slice) list.append(groupCard(it));
    document.getElementById("page-info").textContent =
      shown.length + " shown, page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
  }

  const on = (id, ev, fn) => document.getElementById(id).addEventListener(ev, fn);
  on("filter", "input", (e) => { state.filter = e.target.value; state.page = 0; render(); });
  on("kind", "change", (e) => { state.kind = e.target.value; state.page = 0; render(); });
  on("sort", "change", (e) => { state.sort = e.target.value; state.page = 0; render(); });
  on("prev", "click", () => { state.page -= 1; render(); window.scrollTo(0, 0); });
  on("next", "click", () => { state.page += 1; render(); window.scrollTo(0, 0); });
  render();
  document.body.dataset.ready = "1";
})();
