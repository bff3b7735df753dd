// kernelci-rs /analytics: the labs' telemetry (job and test results, infrastructure
// errors, runtime errors) over a recent window, as charts and tables.
//
// URL parameters (ours; the reference's page kept no state in its URL, its
// controls are these): `window=1h|3h|6h|12h|24h|48h` (default 6h), `runtime=`,
// `tree=`, `kind=` (an event kind), `threshold=0.3|0.5|0.7|0.9` (the anomaly
// threshold, default 0.5), `detail=FIELD:VALUE` (the events behind a row).
// Data: GET /telemetry/stats grouped by kind, runtime, tree and device type,
// /telemetry/anomalies, and /telemetry for the infrastructure errors and a
// row's events (docs/spec/PAGES.md).
import { barChart } from "./charts.js";
import { api, el, header, pageUrl, renderCounter, say, urlSelect, when } from "./common.js";

const WINDOWS = { "1h": 1, "3h": 3, "6h": 6, "12h": 12, "24h": 24, "48h": 48 };
const THRESHOLDS = ["0.3", "0.5", "0.7", "0.9"];
const KINDS = ["job_result", "test_result", "job_submission", "job_skip", "runtime_error"];
/** The figures of a stats row, in the order the tables show them. */
const FIGURES = ["total", "pass", "fail", "incomplete", "skip", "infra_error"];
/** The fields a row's events can be listed by. */
const DETAIL_FIELDS = ["runtime", "tree", "device_type", "kind"];
/** Events a list shows. */
const EVENTS = 50;

/** The health of a runtime by its pass rate (the reference's bands). */
function health(row) {
  const rate = row.total ? row.pass / row.total : 0;
  const band = rate >= 0.8 ? "good" : rate >= 0.5 ? "fair" : "poor";
  return [rate, band];
}

const pct = (x) => (x * 100).toFixed(1) + " %";

async function stats(groupBy, filters) {
  const q = new URLSearchParams([["group_by", groupBy], ...filters]);
  return (await api("/telemetry/stats?" + q.toString())).json;
}

/** The sums of `rows`' figures. */
function totals(rows) {
  const out = Object.fromEntries(FIGURES.map((f) => [f, 0]));
  for (const r of rows) for (const f of FIGURES) out[f] += r[f] || 0;
  return out;
}

function showDetail(field, value) {
  const next = new URLSearchParams(window.location.search);
  next.set("detail", field + ":" + value);
  window.history.pushState(null, "", pageUrl("analytics", next));
  render();
}

/** A table of stats rows grouped by `field`; each row opens its events. */
function statsTable(id, field, rows, withHealth) {
  if (!rows.length) return el("p", { class: "muted", id }, "No event.");
  const head = [field, ...FIGURES, ...(withHealth ? ["pass rate", "health"] : [])];
  return el("div", { class: "scroll" }, el("table", { id, class: "nodes" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h.replace("_", " "))))),
    el("tbody", {}, rows.map((r) => {
      const value = r[field] === null || r[field] === undefined ? "" : String(r[field]);
      const [rate, band] = health(r);
      return el("tr", { "data-key": value },
        el("td", {}, value ? el("a", { href: "#detail", class: "detail-link", onclick: (ev) => {
          ev.preventDefault();
          showDetail(field, value);
        } }, value) : "(none)"),
        FIGURES.map((f) => el("td", { "data-figure": f, class: "num" }, String(r[f] || 0))),
        withHealth ? [el("td", { class: "num" }, pct(rate)),
          el("td", { class: "health health-" + band }, band)] : []);
    }))));
}

function eventsTable(id, items) {
  if (!items.length) return el("p", { class: "muted", id }, "No event.");
  const head = ["time", "kind", "runtime", "device type", "job", "test", "result", "infra", "error"];
  return el("div", { class: "scroll" }, el("table", { id, class: "nodes" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, items.map((e) => el("tr", { "data-id": e.id },
      el("td", {}, when(e.ts)), el("td", {}, e.kind), el("td", {}, e.runtime),
      el("td", {}, e.device_type || ""), el("td", {}, e.job_name || ""), el("td", {}, e.test_name || ""),
      el("td", { class: "result-" + (e.result || "none") }, e.result || "–"),
      el("td", {}, e.is_infra_error ? "yes" : ""),
      el("td", {}, [e.error_type, e.error_msg].filter(Boolean).join(": ")))))));
}

function anomaliesTables(report) {
  const rows = report.result_anomalies || [];
  const errors = report.error_anomalies || [];
  return [
    rows.length ? el("div", { class: "scroll" }, el("table", { id: "anomalies", class: "nodes" },
      el("thead", {}, el("tr", {}, ["runtime", "device type", "total", "fail rate", "infra rate", "constant",
        "latest error", "last seen"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((a) => el("tr", { "data-key": a.runtime + "/" + a.device_type },
        el("td", {}, a.runtime), el("td", {}, a.device_type || ""), el("td", { class: "num" }, String(a.total)),
        el("td", { class: "num" + (a.fail_rate >= report.threshold ? " over" : "") }, pct(a.fail_rate)),
        el("td", { class: "num" + (a.infra_rate >= report.threshold ? " over" : "") }, pct(a.infra_rate)),
        el("td", {}, a.constant_infra_failure ? "infra failure" : a.constant_failure ? "failure" : ""),
        el("td", {}, [a.latest_error_type, a.latest_error_msg].filter(Boolean).join(": ")),
        el("td", {}, when(a.last_seen)))))))
      : el("p", { class: "muted", id: "anomalies" }, "No device type over the threshold."),
    errors.length ? el("div", { class: "scroll" }, el("table", { id: "error-anomalies", class: "nodes" },
      el("thead", {}, el("tr", {}, ["runtime", "error type", "count"].map((h) => el("th", {}, h)))),
      el("tbody", {}, errors.map((a) => el("tr", {}, el("td", {}, a.runtime), el("td", {}, a.error_type || ""),
        el("td", { class: "num" }, String(a.count)))))))
      : null,
  ];
}

/**
 * The heatmap of `runtime,device_type` stats rows: a row per runtime, a column
 * per device type, each cell coloured by its pass rate's health band and saying
 * pass / total (rows with no device type are left out: runtime errors).
 */
function heatmap(rows) {
  const cells = rows.filter((r) => r.device_type);
  if (!cells.length) return el("p", { class: "muted", id: "heatmap" }, "No result on a device.");
  const runtimes = [...new Set(cells.map((r) => r.runtime))].sort();
  const devices = [...new Set(cells.map((r) => r.device_type))].sort();
  const at = new Map(cells.map((r) => [r.runtime + "\n" + r.device_type, r]));
  return el("div", { class: "scroll" }, el("table", { id: "heatmap", class: "matrix" },
    el("thead", {}, el("tr", {}, el("th", {}, "runtime"), devices.map((d) => el("th", {}, d)))),
    el("tbody", {}, runtimes.map((rt) => el("tr", { "data-key": rt }, el("th", {}, rt), devices.map((d) => {
      const r = at.get(rt + "\n" + d);
      if (!r) return el("td", { class: "cell cell-none", "data-device": d }, "–");
      const [rate, band] = health(r);
      return el("td", { class: "cell heat-" + band, "data-device": d, title: `${rt} on ${d}: ${pct(rate)} pass` },
        `${r.pass}/${r.total}`);
    }))))));
}

/** Starts a render; answers that arrive after the page moved on are dropped. */
const startRender = renderCounter();

async function render() {
  const stale = startRender();
  say("");
  const main = document.getElementById("main");
  const params = new URLSearchParams(window.location.search);
  const win = Object.hasOwn(WINDOWS, params.get("window")) ? params.get("window") : "6h";
  const threshold = THRESHOLDS.includes(params.get("threshold")) ? params.get("threshold") : "0.5";
  const kind = KINDS.includes(params.get("kind")) ? params.get("kind") : "";
  const runtime = params.get("runtime") || "";
  const tree = params.get("tree") || "";
  const [detailField, ...rest] = (params.get("detail") || "").split(":");
  const detail = DETAIL_FIELDS.includes(detailField) && rest.length ? [detailField, rest.join(":")] : null;
  const since = new Date(Date.now() - WINDOWS[win] * 3600e3).toISOString().slice(0, 19);
  const filters = [["since", since], ...[["runtime", runtime], ["tree", tree], ["kind", kind]].filter(([, v]) => v)];
  const choose = (name, options, current) => urlSelect("analytics", name, options, current, render);
  const controls = el("div", { class: "builder", id: "controls" },
    choose("window", Object.keys(WINDOWS).map((w) => [w, "last " + w]), win),
    el("span", { id: "runtime-slot" }), el("span", { id: "tree-slot" }),
    choose("kind", [["", "every kind"], ...KINDS.map((k) => [k, k])], kind),
    choose("threshold", THRESHOLDS.map((t) => [t, "anomaly ≥ " + pct(Number(t))]), threshold));
  main.replaceChildren(el("h1", {}, "Lab telemetry, last " + win), controls,
    el("p", { class: "muted", id: "loading" }, "Loading…"));
  try {
    const [byKind, byRuntime, byTree, byDevice, byPair, allRuntimes, allTrees, anomalies, infra, events] = await Promise.all([
      stats("kind", filters), stats("runtime", filters), stats("tree", filters), stats("device_type", filters),
      stats("runtime,device_type", filters),
      stats("runtime", [["since", since]]), stats("tree", [["since", since]]),
      api("/telemetry/anomalies?" + new URLSearchParams([["window", win], ["threshold", threshold]])).then((r) => r.json),
      api("/telemetry?" + new URLSearchParams([["is_infra_error", "true"], ["limit", String(EVENTS)], ...filters]))
        .then((r) => r.json),
      detail ? api("/telemetry?" + new URLSearchParams([...filters.filter(([k]) => k !== detail[0]),
        [detail[0], detail[1]], ["limit", String(EVENTS)]])).then((r) => r.json) : null,
    ]);
    if (stale()) return;
    const names = (rows, field) => rows.map((r) => r[field]).filter((v) => v !== null && v !== undefined);
    document.getElementById("runtime-slot").replaceWith(choose("runtime",
      [["", "every runtime"], ...[...new Set([...names(allRuntimes, "runtime"), ...(runtime ? [runtime] : [])])]
        .map((r) => [r, r])], runtime));
    document.getElementById("tree-slot").replaceWith(choose("tree",
      [["", "every tree"], ...[...new Set([...names(allTrees, "tree"), ...(tree ? [tree] : [])])]
        .map((t) => [t, t])], tree));
    const sum = totals(byKind);
    const cards = el("div", { class: "figures", id: "totals" }, FIGURES.map((f) =>
      el("div", { class: "figure-card fig-" + f, "data-figure": f },
        el("span", { class: "value" }, String(sum[f])), el("span", { class: "label" }, f === "total" ? "events" : f.replace("_", " ")))));
    const bar = (label, n) => [label, n, null];
    const parts = [
      cards,
      el("div", { class: "charts" },
        barChart("by-result", "Results", [bar("pass", sum.pass), bar("fail", sum.fail),
          bar("incomplete", sum.incomplete), bar("skip", sum.skip), bar("infra_error", sum.infra_error)]),
        barChart("by-kind", "Events by kind", byKind.map((r) => bar(r.kind || "(none)", r.total)))),
      detail ? el("section", { id: "detail" },
        el("h2", {}, `Events of ${detail[0].replace("_", " ")} ${detail[1]}`),
        el("p", { class: "muted", id: "detail-total" }, `${events.items.length} newest of ${events.total}`),
        eventsTable("detail-events", events.items)) : null,
      el("h2", {}, "Runtimes"), statsTable("by-runtime", "runtime", byRuntime, true),
      el("h2", {}, "Pass rate by runtime and device type"), heatmap(byPair),
      el("h2", {}, "Anomalies"), ...anomaliesTables(anomalies),
      el("h2", {}, "Trees"), statsTable("by-tree", "tree", byTree, false),
      el("h2", {}, "Device types"), statsTable("by-device", "device_type", byDevice, false),
      el("h2", {}, "Recent infrastructure errors"),
      el("p", { class: "muted", id: "infra-total" }, `${infra.items.length} newest of ${infra.total}`),
      eventsTable("infra-errors", infra.items)];
    document.getElementById("loading").replaceWith(...parts.filter(Boolean));
  } catch (e) {
    if (stale()) return;
    const loading = document.getElementById("loading");
    if (loading) loading.remove();
    say(e.message);
  }
}

header("analytics");
document.title = "KernelCI analytics";
window.addEventListener("popstate", render);
render();
