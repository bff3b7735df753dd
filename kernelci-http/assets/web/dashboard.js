// kernelci-rs /dashboard: the results of trees, branches and checkouts, with the
// builds, test suites and tests of one checkout counted by result, its
// regressions highlighted, and live updates while its nodes run.
//
// URL parameters (docs/spec/PAGES.md): the reference's `tree`, `branch` and
// `timeframe` (24h, 7d, 30d default, 90d, all), and its mode flags: `builds`
// adds the heatmap of the branch's kbuilds to the branch view, `testsuites` (or
// `tests`) that of its test suites (jobs). Ours: `commit` (with tree and
// branch) or `checkout=ID` opens a checkout; `result`, `name` (a regex),
// `suite` (a job id) and `offset` filter and page its lists.
import {
  allNodes, api, apiBase, convertCondition, count, el, header, nodeLink, pageUrl, renderCounter, say, since,
  when,
} from "./common.js";
import { resultMatrix } from "./matrix.js";

const TIMEFRAMES = { "24h": 1, "7d": 7, "30d": 30, "90d": 90, all: 0 };
/** Checkouts the tree view lists. */
const COMMITS = 30;
/** Builds and suites a checkout view lists (the viewer has the rest). */
const LIST_MAX = 500;
/** Tests per page. */
const PAGE = 100;
/** The summary's columns: a label and the conditions it adds. */
const COLUMNS = [
  ["total", []], ["pass", ["result=pass"]], ["fail", ["result=fail"]],
  ["incomplete", ["result=incomplete"]], ["skip", ["result=skip"]], ["not done", ["state!=done"]],
];
const KINDS = [["kbuild", "Builds"], ["job", "Test suites (jobs)"], ["test", "Tests"]];
/** The list filter's choices: a value of `result=` and its conditions. */
const RESULT_FILTERS = {
  "": [], pass: ["result=pass"], fail: ["result=fail"], incomplete: ["result=incomplete"],
  skip: ["result=skip"], running: ["state!=done"],
};

/** The conditions (viewer `search=` form) of a kernel revision's nodes. */
function scopeConds(rev) {
  return ["tree", "branch", "commit"].filter((k) => rev[k])
    .map((k) => `data.kernel_revision.${k}=${rev[k]}`);
}

const pairs = (conds) => conds.map(convertCondition);
const viewerLink = (conds, text, attrs = {}) =>
  el("a", Object.assign({ href: pageUrl("viewer", conds.map((c) => ["search", c])) }, attrs), text);

function timeframeOf(params) {
  const t = params.get("timeframe");
  return Object.hasOwn(TIMEFRAMES, t) ? t : "30d";
}

function windowConds(tf) {
  return TIMEFRAMES[tf] ? ["created>" + since(TIMEFRAMES[tf])] : [];
}

function navigate(params) {
  window.history.pushState(null, "", pageUrl("dashboard", params));
  render();
}

/** A result cell (with the regression badge when the node is one's). */
function resultCell(n, regressed) {
  const r = n.result || "";
  return el("td", { class: "result-" + (r || "none") }, r || "–",
    regressed ? el("span", { class: "badge regression", title: "regression" }, "regression") : null);
}

// ---- start view: trees and branches ---------------------------------------------

async function showTrees(main, tf, stale) {
  main.replaceChildren(el("h1", {}, "Dashboard"), timeframePicker(tf, []),
    el("p", { class: "muted", id: "loading" }, "Loading checkouts…"));
  const checkouts = await allNodes([["kind", "checkout"], ...pairs(windowConds(tf)), ["sort", "-created"]]);
  if (stale()) return;
  const byTree = new Map();
  for (const n of checkouts) {
    const rev = (n.data && n.data.kernel_revision) || {};
    if (!rev.tree) continue;
    const key = rev.tree + "\n" + (rev.branch || "");
    const row = byTree.get(key) || { rev, newest: n, count: 0 };
    row.count += 1;
    byTree.set(key, row);
  }
  const rows = [...byTree.values()].sort((a, b) => (a.newest.created < b.newest.created ? 1 : -1));
  document.getElementById("loading").replaceWith(rows.length
    ? el("div", { class: "scroll" }, el("table", { id: "trees", class: "nodes" },
      el("thead", {}, el("tr", {}, ["tree", "branch", "checkouts", "newest commit", "newest checkout"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map(({ rev, newest, count: n }) => el("tr", { "data-tree": rev.tree },
        el("td", {}, el("a", { href: pageUrl("dashboard", [["tree", rev.tree], ["branch", rev.branch || ""],
          ["timeframe", tf]]) }, rev.tree)),
        el("td", {}, rev.branch || ""),
        el("td", {}, String(n)),
        el("td", { class: "mono" }, el("a", { href: pageUrl("dashboard", [["checkout", newest.id]]) },
          String(newest.data.kernel_revision.commit || "").slice(0, 12))),
        el("td", {}, when(newest.created)))))))
    : el("p", {}, "No checkout in this time frame."));
}

function timeframePicker(tf, keep) {
  return el("div", { class: "builder" }, el("label", { for: "timeframe" }, "Time frame "),
    el("select", { id: "timeframe", onchange: (ev) => navigate([...keep, ["timeframe", ev.target.value]]) },
      Object.keys(TIMEFRAMES).map((t) => el("option", { value: t, selected: t === tf },
        t === "all" ? "all time" : "last " + t))));
}

// ---- tree view: the commits of a tree and branch ------------------------------

/** The reference's mode flags and what each heatmap shows: [kind, corner, title]. */
const MODES = {
  builds: ["kbuild", "kbuild", "Builds"],
  testsuites: ["job", "suite", "Test suites"],
  tests: ["job", "suite", "Test suites"],
};

async function showBranch(main, rev, tf, mode, stale) {
  const keep = [["tree", rev.tree], ["branch", rev.branch]];
  const modeLink = (flag, label) => el("a", { id: "mode-" + flag, class: flag === mode ? "current" : null,
    href: pageUrl("dashboard", [[flag, ""], ...keep, ["timeframe", tf]]) }, label);
  main.replaceChildren(
    el("h1", {}, `${rev.tree} / ${rev.branch}`),
    el("p", { class: "crumbs" }, el("a", { href: pageUrl("dashboard", [["timeframe", tf]]) }, "All trees"),
      " · heatmap of ", modeLink("builds", "builds"), " · ", modeLink("testsuites", "test suites")),
    timeframePicker(tf, mode ? [[mode, ""], ...keep] : keep),
    el("p", { class: "muted", id: "loading" }, "Loading commits…"),
    el("section", { id: "heatmap-area" }));
  const q = [["kind", "checkout"], ...pairs([...scopeConds(rev), ...windowConds(tf)]),
    ["sort", "-created"], ["limit", String(COMMITS)]];
  const { json } = await api("/nodes?" + new URLSearchParams(q).toString());
  const rows = await Promise.all(json.items.map(async (c) => {
    const crev = c.data.kernel_revision || {};
    const scope = scopeConds({ tree: rev.tree, branch: rev.branch, commit: crev.commit });
    const figures = await Promise.all([["kbuild", "pass"], ["kbuild", "fail"], ["test", "pass"], ["test", "fail"]]
      .map(([k, r]) => count(pairs([...scope, "kind=" + k, "result=" + r])).then((n) => [k, r, n, scope])));
    return [c, figures];
  }));
  if (stale()) return;
  const cell = ([k, r, n, scope]) => el("td", { class: n ? "cell cell-" + r : "cell cell-none", "data-figure": k + "-" + r },
    viewerLink([...scope, "kind=" + k, "result=" + r], String(n)));
  document.getElementById("loading").replaceWith(
    el("p", { class: "muted", id: "commits-total" }, `${json.items.length} newest of ${json.total} checkouts`),
    el("div", { class: "scroll" }, el("table", { id: "commits", class: "nodes" },
      el("thead", {}, el("tr", {}, ["created", "commit", "describe", "state", "result",
        "builds pass", "builds fail", "tests pass", "tests fail"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map(([c, figures]) => {
        const crev = c.data.kernel_revision || {};
        return el("tr", { "data-id": c.id },
          el("td", {}, when(c.created)),
          el("td", { class: "mono" }, el("a", { href: pageUrl("dashboard", [...keep, ["commit", crev.commit || ""]]) },
            String(crev.commit || "").slice(0, 12))),
          el("td", {}, crev.describe || ""),
          el("td", {}, c.state),
          resultCell(c, false),
          figures.map(cell));
      })))));
  if (!mode) return;
  const [kind, corner, title] = MODES[mode];
  const area = document.getElementById("heatmap-area");
  area.replaceChildren(el("p", { class: "muted" }, "Loading the heatmap…"));
  const nodes = await allNodes([["kind", kind], ...pairs([...scopeConds(rev), ...windowConds(tf)])]);
  if (stale()) return;
  const { table, commits, names } = resultMatrix("heatmap", corner, nodes);
  area.replaceChildren(el("h2", {}, `${title}: ${names} across ${commits} commits`),
    nodes.length ? table : el("p", { class: "muted" }, "None in this time frame."));
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// ---- checkout view ------------------------------------------------------------------

/** The live event stream of the open checkout view (closed when the page moves). */
let source = null;
/** The refresh scheduled after a burst of events (cancelled with the stream). */
let timer = null;

function closeLive() {
  if (source) source.close();
  source = null;
  clearTimeout(timer);
  timer = null;
}

/**
 * Follows the event stream of the nodes of `rev` (GET /events/stream, filtered by
 * commit on the server, by tree and branch here) and calls `changed` after each
 * burst of events.
 */
function followLive(rev, changed) {
  closeLive();
  const badge = document.getElementById("live");
  const q = new URLSearchParams([["channel", "node"], ["data.data.kernel_revision.commit", rev.commit]]);
  const mine = new EventSource(apiBase() + "/events/stream?" + q.toString());
  source = mine;
  let updates = 0;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(changed, 300);
  };
  mine.onopen = () => {
    badge.className = "live on";
    badge.textContent = "live" + (updates ? " · " + plural(updates, "update") : "");
    // What changed between the page's reads and the stream's start (or while
    // it was reconnecting) came before the stream's first event: read again.
    soon();
  };
  mine.onerror = () => {
    badge.className = "live off";
    // A refused stream (too many, or an error answer) is not retried.
    badge.textContent = mine.readyState === EventSource.CLOSED
      ? "live updates unavailable: reload to try again" : "live updates paused, reconnecting…";
  };
  mine.onmessage = (ev) => {
    let e;
    try {
      e = JSON.parse(ev.data);
    } catch (err) {
      return;
    }
    const r = (e.data && e.data.data && e.data.data.kernel_revision) || {};
    if ((rev.tree && r.tree !== rev.tree) || (rev.branch && r.branch !== rev.branch)) return;
    updates += 1;
    badge.textContent = `live · ${plural(updates, "update")} · last ${when(e.timestamp)}`;
    soon();
  };
}

async function showCheckout(main, params, stale) {
  let checkout;
  let rev;
  if (params.get("checkout")) {
    checkout = (await api("/node/" + encodeURIComponent(params.get("checkout").trim()))).json;
    rev = (checkout.data && checkout.data.kernel_revision) || {};
    if (!rev.commit) throw new Error(`Node ${checkout.id} has no kernel revision to show.`);
  } else {
    rev = { tree: params.get("tree") || "", branch: params.get("branch") || "", commit: params.get("commit") };
    const { json } = await api("/nodes?" + new URLSearchParams([["kind", "checkout"], ...pairs(scopeConds(rev)),
      ["sort", "-created"], ["limit", "1"]]).toString());
    checkout = json.items[0] || null;
    // The checkout's revision says more (describe, URL); the URL's fields win.
    if (checkout && checkout.data && checkout.data.kernel_revision) {
      rev = Object.assign({}, checkout.data.kernel_revision, Object.fromEntries(Object.entries(rev).filter(([, v]) => v)));
    }
  }
  if (stale()) return;
  const scope = scopeConds(rev);
  const result = Object.hasOwn(RESULT_FILTERS, params.get("result")) ? params.get("result") : "";
  const name = params.get("name") || "";
  const suite = params.get("suite") || "";
  const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  const here = checkout && params.get("checkout") ? [["checkout", checkout.id]]
    : [["tree", rev.tree || ""], ["branch", rev.branch || ""], ["commit", rev.commit]];
  const go = (changes) => {
    const next = new URLSearchParams(here);
    for (const [k, v] of Object.entries(Object.assign({ result, name, suite }, changes))) {
      if (v) next.set(k, v);
    }
    navigate(next);
  };
  const filters = el("form", { id: "filters", class: "builder", onsubmit: (ev) => {
    ev.preventDefault();
    go({ result: document.getElementById("result").value, name: document.getElementById("name").value.trim() });
  } },
  el("label", { for: "result" }, "Result "),
  el("select", { id: "result" }, Object.keys(RESULT_FILTERS).map((r) =>
    el("option", { value: r, selected: r === result }, r || "any"))),
  el("label", { for: "name" }, "Name (regex) "),
  el("input", { id: "name", value: name, placeholder: "e.g. ^baseline" }),
  el("button", { type: "submit", id: "apply" }, "Filter"),
  suite ? el("button", { type: "button", id: "all-suites", onclick: () => go({ suite: "" }) }, "All suites") : null);
  main.replaceChildren(
    el("h1", {}, `${rev.tree || "?"} / ${rev.branch || "?"} `, el("small", { class: "mono" }, String(rev.commit).slice(0, 12))),
    el("p", { class: "crumbs" },
      el("a", { href: pageUrl("dashboard", []) }, "All trees"), " · ",
      el("a", { href: pageUrl("dashboard", [["tree", rev.tree || ""], ["branch", rev.branch || ""]]) },
        `${rev.tree} / ${rev.branch}`), " · ",
      checkout ? nodeLink(checkout.id, "checkout node") : "no checkout node", " ",
      rev.describe ? el("span", { class: "mono" }, rev.describe) : null, " ",
      el("span", { id: "live", class: "live off" }, "connecting…")),
    el("section", { id: "summary" }, el("p", { class: "muted" }, "Counting…")),
    el("section", { id: "regressions" }),
    filters,
    el("section", { id: "builds" }),
    el("section", { id: "suites" }),
    el("section", { id: "tests" }));
  const listConds = [...RESULT_FILTERS[result], ...(name ? ["name__re=" + name] : [])];
  const fill = async () => {
    const [summary, regressions, builds, suites, tests] = await Promise.all([
      summaryOf(scope),
      api("/nodes?" + new URLSearchParams([["kind", "regression"],
        ...pairs(scopeConds({ tree: rev.tree, branch: rev.branch, commit: rev.commit })
          .map((c) => c.replace("data.kernel_revision.", "data.failed_kernel_revision."))),
        ["limit", String(LIST_MAX)]]).toString()).then((r) => r.json),
      list([...scope, "kind=kbuild", ...listConds], LIST_MAX, 0),
      list([...scope, "kind=job", ...listConds], LIST_MAX, 0),
      list([...scope, "kind=test", ...listConds, ...(suite ? ["parent=" + suite] : [])], PAGE, offset),
    ]);
    if (stale()) return;
    const regressed = new Set();
    for (const r of regressions.items) if (r.data && r.data.fail_node) regressed.add(r.data.fail_node);
    const isRegressed = (n) => regressed.has(n.id) || Boolean(n.data && n.data.regression);
    document.getElementById("summary").replaceChildren(summaryTable(scope, summary, regressions.total));
    document.getElementById("regressions").replaceChildren(...regressionList(regressions));
    document.getElementById("builds").replaceChildren(
      el("h2", {}, `Builds (${builds.total})`),
      builds.total > builds.items.length ? viewerLink([...scope, "kind=kbuild", ...listConds], "all in the viewer") : "",
      table("builds-table", ["name", "arch", "config", "compiler", "state", "result"], builds.items, (n) => [
        el("td", {}, nodeLink(n.id, n.name)), el("td", {}, n.data.arch || ""),
        el("td", {}, n.data.config_full || n.data.defconfig || n.data.config || ""),
        el("td", {}, n.data.compiler || ""), el("td", {}, n.state), resultCell(n, isRegressed(n))], isRegressed));
    document.getElementById("suites").replaceChildren(
      el("h2", {}, `Test suites (${suites.total})`),
      table("suites-table", ["suite", "platform", "runtime", "state", "result", "tests"], suites.items, (n) => [
        el("td", {}, nodeLink(n.id, n.name)), el("td", {}, n.data.platform || ""), el("td", {}, n.data.runtime || ""),
        el("td", {}, n.state), resultCell(n, isRegressed(n)),
        el("td", {}, el("a", { href: "#tests", class: "suite-tests", onclick: (ev) => {
          ev.preventDefault();
          go({ suite: n.id });
        } }, "tests"))], isRegressed));
    const last = Math.min(offset + tests.items.length, tests.total);
    document.getElementById("tests").replaceChildren(
      el("h2", {}, "Tests", suite ? ` of suite ${(suites.items.find((s) => s.id === suite) || { name: suite }).name}` : ""),
      el("div", { class: "pager" },
        el("span", { id: "tests-total" }, tests.total ? `${offset + 1}–${last} of ${tests.total} tests` : "No test matches."),
        offset > 0 ? el("button", { type: "button", id: "tests-prev",
          onclick: () => navigate(withOffset(Math.max(0, offset - PAGE))) }, "Previous") : null,
        last < tests.total ? el("button", { type: "button", id: "tests-next",
          onclick: () => navigate(withOffset(offset + PAGE)) }, "Next") : null),
      table("tests-table", ["test", "suite", "platform", "state", "result", "created"], tests.items, (n) => [
        el("td", {}, nodeLink(n.id, n.name)),
        el("td", {}, Array.isArray(n.path) && n.path.length > 1 ? n.path[n.path.length - 2] : ""),
        el("td", {}, (n.data && n.data.platform) || ""), el("td", {}, n.state), resultCell(n, isRegressed(n)),
        el("td", {}, when(n.created))], isRegressed));
  };
  await fill();
  if (stale()) return;
  // One refresh at a time: a burst during a refresh runs one more after it, so
  // an older read never lands over a newer one.
  let running = false;
  let again = false;
  const refresh = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await fill();
      } while (again && !stale());
    } catch (e) {
      if (!stale()) say(e.message);
    } finally {
      running = false;
    }
  };
  if (rev.commit) followLive(rev, refresh);
}

function withOffset(offset) {
  const next = new URLSearchParams(window.location.search);
  if (offset) next.set("offset", String(offset));
  else next.delete("offset");
  return next;
}

async function list(conds, limit, offset) {
  const q = new URLSearchParams([...pairs(conds), ["sort", "-created"], ["limit", String(limit)],
    ["offset", String(offset)]]);
  return (await api("/nodes?" + q.toString())).json;
}

/** Every figure of the summary: per kind, per column. */
async function summaryOf(scope) {
  return Promise.all(KINDS.map(([kind]) => Promise.all(COLUMNS.map(([, extra]) =>
    count(pairs([...scope, "kind=" + kind, ...extra]))))));
}

function summaryTable(scope, figures, regressions) {
  return el("div", { class: "scroll" }, el("table", { id: "summary-table", class: "summary" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), COLUMNS.map(([label]) => el("th", {}, label)))),
    el("tbody", {}, KINDS.map(([kind, label], i) => el("tr", { "data-kind": kind }, el("th", {}, label),
      COLUMNS.map(([col, extra], j) => el("td", { "data-col": col, class: "figure fig-" + col.replace(" ", "-") },
        viewerLink([...scope, "kind=" + kind, ...extra], String(figures[i][j])))))))),
    el("p", { id: "regressions-total", class: regressions ? "regression-note" : "muted" },
      regressions ? plural(regressions, "regression") : "No regression"));
}

function regressionList(regressions) {
  if (!regressions.items.length) return [];
  return [el("h2", {}, `Regressions (${regressions.total})`),
    table("regressions-table", ["regression", "platform", "config", "failed", "last passed"], regressions.items,
      (n) => [el("td", {}, nodeLink(n.id, n.name)), el("td", {}, n.data.platform || ""),
        el("td", {}, n.data.config_full || n.data.defconfig || ""),
        el("td", {}, n.data.fail_node ? nodeLink(n.data.fail_node, "failed node") : ""),
        el("td", {}, n.data.pass_node ? nodeLink(n.data.pass_node, "passing node") : "")], () => true)];
}

function table(id, head, items, cells, highlight) {
  if (!items.length) return el("p", { class: "muted", id }, "None.");
  return el("div", { class: "scroll" }, el("table", { id, class: "nodes" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, items.map((n) => el("tr", { "data-id": n.id, class: highlight(n) ? "regression" : null },
      cells(n))))));
}

// ---- the page -----------------------------------------------------------------------

/** Starts a render; answers that arrive after the page moved on are dropped. */
const startRender = renderCounter();

async function render() {
  const stale = startRender();
  closeLive();
  say("");
  const main = document.getElementById("main");
  const params = new URLSearchParams(window.location.search);
  const tf = timeframeOf(params);
  try {
    if (params.get("checkout") || params.get("commit")) {
      document.title = "KernelCI dashboard: checkout";
      await showCheckout(main, params, stale);
    } else if (params.get("tree")) {
      document.title = "KernelCI dashboard: " + params.get("tree");
      const mode = Object.keys(MODES).find((f) => params.has(f)) || "";
      await showBranch(main, { tree: params.get("tree"), branch: params.get("branch") || "" }, tf, mode, stale);
    } else {
      document.title = "KernelCI dashboard";
      await showTrees(main, tf, stale);
    }
  } catch (e) {
    if (!stale()) say(e.message);
  }
}

header("dashboard");
window.addEventListener("popstate", render);
render();
