// kernelci-rs /viewer: search nodes with the query language, open a node.
//
// URL parameters (the reference viewer's, so that KCIDB and e-mail links keep
// working): `node_id=ID` opens a node; repeated `search=COND` runs a search, each
// COND being `field OP value` with OP one of = != > >= < <= (as the reference's
// viewer converts them: `created>X` is `created__gt=X`), or any raw API filter
// (`name__re=^baseline`); ours adds `offset=N` for the page of results.
// `view=trees` shows the tree selector and the kbuild matrix of a tree/branch
// (ours adds `tree=` and `branch=`, so a matrix can be linked).
import {
  allNodes, api, apiBase, convertCondition, el, header, nodeLink, nodesTable, OPERATORS, pageUrl, safeHref,
  renderCounter, say, since,
} from "./common.js";
import { resultMatrix } from "./matrix.js";

/** Results per page. */
const PAGE = 50;

/** The API query of a list of conditions, newest first unless one says `sort`. */
function searchQuery(conds, offset) {
  const q = new URLSearchParams();
  for (const c of conds) {
    const [key, value] = convertCondition(c);
    q.append(key, value);
  }
  if (!q.has("sort")) q.set("sort", "-created");
  q.set("limit", String(PAGE));
  q.set("offset", String(offset));
  return q;
}

const FIELDS = [
  "kind", "name", "state", "result", "owner", "submitter", "group", "parent", "created",
  "updated", "path", "data.kernel_revision.tree", "data.kernel_revision.branch",
  "data.kernel_revision.commit", "data.platform", "data.arch", "data.runtime",
];

function searchForm(conds) {
  const box = el("textarea", { id: "conditions", rows: 3, spellcheck: "false",
    "aria-label": "Conditions, one per line" }, conds.join("\n"));
  const field = el("select", { id: "cond-field", "aria-label": "Field" },
    FIELDS.map((f) => el("option", { value: f }, f)));
  const op = el("select", { id: "cond-op", "aria-label": "Operator" },
    Object.keys(OPERATORS).map((o) => el("option", { value: o }, o)));
  const value = el("input", { id: "cond-value", "aria-label": "Value", placeholder: "value" });
  const add = el("button", { type: "button", id: "cond-add", onclick: () => {
    const line = field.value + op.value + value.value;
    box.value = (box.value.trim() ? box.value.trim() + "\n" : "") + line;
    value.value = "";
  } }, "Add condition");
  const form = el("form", { id: "search", class: "search", onsubmit: (ev) => {
    ev.preventDefault();
    const lines = box.value.split("\n").map((l) => l.trim()).filter((l) => l);
    navigate(lines.length ? lines.map((l) => ["search", l]) : [["search", ""]]);
  } },
  el("div", { class: "builder" }, field, op, value, add),
  el("label", { for: "conditions" }, "Conditions (one per line: ",
    el("code", {}, "kind=kbuild"), ", ", el("code", {}, "created>2026-01-01"), ", ",
    el("code", {}, "name__re=^baseline"), ")"),
  box,
  el("div", {}, el("button", { type: "submit", id: "search-go" }, "Search")));
  return form;
}

function navigate(params) {
  window.history.pushState(null, "", pageUrl("viewer", params));
  render();
}

/** The search form, and the results when `run` (an empty `search=` lists every node, as in the reference). */
async function showSearch(main, conds, offset, run, stale) {
  main.replaceChildren(searchForm(conds));
  if (!run) return;
  const q = searchQuery(conds, offset);
  const out = el("section", { id: "results", "aria-busy": "true" }, el("p", { class: "muted" }, "Searching…"));
  main.append(out);
  const { json } = await api("/nodes?" + q.toString());
  if (stale()) return;
  const keep = conds.length ? conds.map((c) => ["search", c]) : [["search", ""]];
  const first = json.total === 0 ? 0 : offset + 1;
  const last = offset + json.items.length;
  const pager = el("p", { class: "pager" },
    el("span", { id: "total", "data-total": json.total },
      `${first}–${last} of ${json.total} node${json.total === 1 ? "" : "s"}`),
    offset > 0 ? el("a", { id: "prev", href: pageUrl("viewer",
      [...keep, ["offset", Math.max(0, offset - PAGE)]]) }, "← previous") : null,
    last < json.total ? el("a", { id: "next", href: pageUrl("viewer",
      [...keep, ["offset", offset + PAGE]]) }, "next →") : null,
    el("a", { href: apiBase() + "/nodes?" + q.toString(), class: "muted" }, "as JSON"));
  out.replaceChildren(pager, json.items.length ? nodesTable(json.items) : el("p", {}, "No node matches."));
  out.removeAttribute("aria-busy");
}

function fieldRows(node) {
  const skip = new Set(["data", "artifacts", "path"]);
  return Object.entries(node).filter(([k]) => !skip.has(k)).map(([k, v]) => {
    let cell;
    if (k === "parent" && v) cell = nodeLink(v);
    else if (v === null || v === undefined) cell = el("span", { class: "muted" }, "null");
    else if (typeof v === "object") cell = el("code", {}, JSON.stringify(v));
    else cell = String(v);
    return el("tr", {}, el("th", {}, k), el("td", { "data-field": k }, cell));
  });
}

async function showNode(main, id, stale) {
  main.replaceChildren(el("p", { class: "muted" }, "Loading node " + id + "…"));
  const { json: node, text } = await api("/node/" + encodeURIComponent(id));
  if (stale()) return;
  if (node === null) {
    main.replaceChildren();
    say("No node with id " + id + ".");
    return;
  }
  const crumbs = el("nav", { class: "crumbs", "aria-label": "Path" },
    (node.path || []).map((p, i, all) => i === all.length - 1 ? el("strong", {}, p) : el("span", {}, p + " › ")));
  const artifacts = Object.entries(node.artifacts || {});
  const download = el("button", { type: "button", id: "download", onclick: () => {
    const blob = new Blob([text], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "node-" + node.id + ".json" });
    document.body.append(a);
    a.click();
    a.remove();
  } }, "Download JSON");
  const children = el("section", { id: "children" }, el("h2", {}, "Children"), el("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(
    crumbs,
    el("h1", { id: "node-title" }, node.name, " ", el("small", { class: "muted" }, node.kind)),
    el("p", { class: "links" },
      node.parent ? nodeLink(node.parent, "↑ parent") : null,
      el("a", { id: "children-search", href: pageUrl("viewer", [["search", "parent=" + node.id]]) }, "children as a search"),
      el("a", { href: apiBase() + "/node/" + node.id }, "API"),
      download),
    el("table", { class: "fields" }, el("tbody", {}, fieldRows(node))),
    artifacts.length ? el("section", { id: "artifacts" }, el("h2", {}, "Artifacts"),
      el("ul", {}, artifacts.map(([k, url]) => el("li", {}, safeHref(url)
        ? el("a", { href: safeHref(url) }, k)
        : el("span", {}, k + ": ", el("code", {}, String(url))))))) : null,
    node.data ? el("section", {}, el("h2", {}, "Data"), el("pre", { id: "data" }, JSON.stringify(node.data, null, 2))) : null,
    children,
    el("details", { id: "raw" }, el("summary", {}, "Raw JSON"), el("pre", { id: "raw-json" }, JSON.stringify(node, null, 2))));
  const kids = await api("/nodes?" + new URLSearchParams([["parent", node.id], ["limit", "100"], ["sort", "created"]]));
  if (stale()) return;
  children.replaceChildren(el("h2", {}, "Children ", el("small", { class: "muted", id: "children-total" }, String(kids.json.total))),
    kids.json.items.length ? nodesTable(kids.json.items) : el("p", { class: "muted" }, "None."),
    kids.json.total > kids.json.items.length ? el("p", {}, el("a", { href: pageUrl("viewer", [["search", "parent=" + node.id]]) }, "all " + kids.json.total)) : null);
}

/** How far back the trees view looks (the reference's four weeks). */
const TREES_DAYS = 28;

async function showTrees(main, tree, branch, stale) {
  const pick = el("select", { id: "tree-branch", "aria-label": "Tree and branch" });
  const filter = el("input", { id: "tree-filter", placeholder: "filter", "aria-label": "Filter trees",
    oninput: () => {
      const f = filter.value.toLowerCase();
      for (const o of pick.options) o.hidden = !o.value.toLowerCase().includes(f);
    } });
  const form = el("form", { id: "trees", class: "search", onsubmit: (ev) => {
    ev.preventDefault();
    const [t, b] = pick.value.split("\n");
    if (!t) {
      say("Choose a tree and branch first.");
      return;
    }
    navigate([["view", "trees"], ["tree", t], ["branch", b]]);
  } }, el("div", { class: "builder" }, filter, pick, el("button", { type: "submit", id: "load-matrix" }, "Load matrix")));
  const out = el("section", { id: "matrix-area" });
  main.replaceChildren(el("h1", {}, "Trees"), form, out);
  const checkouts = await allNodes([["kind", "checkout"], ["created__gt", since(TREES_DAYS)]]);
  if (stale()) return;
  const pairs = new Map();
  for (const n of checkouts) {
    const rev = (n.data && n.data.kernel_revision) || {};
    if (rev.tree) pairs.set(rev.tree + "/" + (rev.branch || ""), [rev.tree, rev.branch || ""]);
  }
  const keys = [...pairs.keys()].sort();
  pick.replaceChildren(el("option", { value: "" }, keys.length ? "tree/branch…" : "no checkout in " + TREES_DAYS + " days"),
    ...keys.map((k) => {
      const [t, b] = pairs.get(k);
      return el("option", { value: t + "\n" + b, selected: t === tree && b === branch }, k);
    }));
  if (!tree) return;
  out.replaceChildren(el("p", { class: "muted" }, "Loading kbuilds…"));
  const kbuilds = await allNodes([["kind", "kbuild"], ["data.kernel_revision.tree", tree],
    ["data.kernel_revision.branch", branch], ["created__gt", since(TREES_DAYS)]]);
  if (stale()) return;
  if (!kbuilds.length) {
    out.replaceChildren(el("p", {}, `No kbuild of ${tree}/${branch} in the last ${TREES_DAYS} days.`));
    return;
  }
  const { table, commits, names } = resultMatrix("matrix", "kbuild", kbuilds);
  out.replaceChildren(
    el("h2", {}, `kbuilds of ${tree}/${branch}`),
    el("p", { class: "muted" }, `${commits} commits, ${names} configurations, last ${TREES_DAYS} days`),
    table);
}

/** Starts a render; answers that arrive after the page moved on are dropped. */
const startRender = renderCounter();

async function render() {
  const stale = startRender();
  say("");
  const main = document.getElementById("main");
  const params = new URLSearchParams(window.location.search);
  try {
    if (params.get("view") === "trees") {
      document.title = "KernelCI trees";
      await showTrees(main, params.get("tree") || "", params.get("branch") || "", stale);
    } else if (params.has("node_id")) {
      const id = params.get("node_id").trim();
      if (!id) {
        main.replaceChildren(el("form", { class: "search", onsubmit: (ev) => {
          ev.preventDefault();
          navigate([["node_id", document.getElementById("node-id").value.trim()]]);
        } }, el("label", { for: "node-id" }, "Node id"), el("input", { id: "node-id" }), el("button", {}, "Open")));
        return;
      }
      document.title = "KernelCI node " + id;
      await showNode(main, id, stale);
    } else {
      document.title = "KernelCI viewer";
      const conds = params.getAll("search").filter((c) => c.trim() !== "");
      const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
      await showSearch(main, conds, offset, params.has("search"), stale);
    }
  } catch (e) {
    if (!stale()) say(e.message);
  }
}

header("viewer");
window.addEventListener("popstate", render);
render();
