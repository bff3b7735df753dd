// kernelci-rs /stats: how many nodes of each kind, state and result were created
// in a time window, as bar charts; each bar opens those nodes in the viewer.
//
// URL parameters (ours; the reference's page kept no state in its URL):
// `window=24h|7d|30d|all` (default 7d), `kind=K` to restrict the state and result
// charts to one kind. Every figure is one `/count` of the JSON API.
import { api, convertCondition, el, header, pageUrl, say, since } from "./common.js";

const WINDOWS = { "24h": 1, "7d": 7, "30d": 30, all: 0 };
const KINDS = ["checkout", "kbuild", "job", "test", "process", "regression"];
const STATES = ["running", "available", "closing", "done"];
const RESULTS = ["pass", "fail", "skip", "incomplete", "null"];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** A horizontal bar chart of [label, count, viewer conditions] rows. */
function barChart(id, title, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const rowH = 28;
  const labelW = 110;
  const barW = 360;
  const chart = svg("svg", { id, class: "chart", role: "img", "aria-label": title,
    viewBox: `0 0 ${labelW + barW + 90} ${rows.length * rowH + 8}`, width: "100%" });
  rows.forEach(([label, count, conds], i) => {
    const y = i * rowH + 4;
    const w = Math.max(count > 0 ? 2 : 0, Math.round((count / max) * barW));
    const link = svg("a", { href: pageUrl("viewer", conds.map((c) => ["search", c])), class: "bar",
      "data-label": label, "data-count": String(count) },
      svg("title", {}, `${label}: ${count}`),
      svg("text", { x: labelW - 8, y: y + 18, "text-anchor": "end" }, label),
      svg("rect", { x: labelW, y, width: w, height: rowH - 8, class: "bar-" + label }),
      svg("text", { x: labelW + w + 6, y: y + 18, class: "count" }, String(count)));
    chart.append(link);
  });
  return el("figure", { class: "stat" }, el("figcaption", {}, title), chart);
}

async function counts(base, field, values) {
  return Promise.all(values.map(async (v) => {
    const conds = [...base, `${field}=${v}`];
    const q = new URLSearchParams(conds.map(convertCondition));
    const { json } = await api("/count?" + q.toString());
    return [v, json, conds];
  }));
}

async function render() {
  say("");
  const main = document.getElementById("main");
  const params = new URLSearchParams(window.location.search);
  const win = Object.hasOwn(WINDOWS, params.get("window")) ? params.get("window") : "7d";
  const kind = KINDS.includes(params.get("kind")) ? params.get("kind") : "";
  const choose = (name, options, current) => el("select", { id: name, "aria-label": name,
    onchange: () => {
      const next = new URLSearchParams(window.location.search);
      const v = document.getElementById(name).value;
      if (v) next.set(name, v);
      else next.delete(name);
      window.history.pushState(null, "", pageUrl("stats", next));
      render();
    } }, options.map(([v, label]) => el("option", { value: v, selected: v === current }, label)));
  main.replaceChildren(
    el("h1", {}, "Nodes created ", win === "all" ? "at any time" : "in the last " + win),
    el("div", { class: "builder" },
      choose("window", Object.keys(WINDOWS).map((w) => [w, w === "all" ? "all time" : "last " + w]), win),
      choose("kind", [["", "every kind"], ...KINDS.map((k) => [k, k])], kind)),
    el("p", { class: "muted", id: "loading" }, "Counting…"));
  const base = WINDOWS[win] ? ["created>" + since(WINDOWS[win])] : [];
  const scoped = kind ? [...base, "kind=" + kind] : base;
  try {
    const [byKind, byState, byResult] = await Promise.all([
      counts(base, "kind", KINDS), counts(scoped, "state", STATES), counts(scoped, "result", RESULTS)]);
    const total = byKind.reduce((n, r) => n + r[1], 0);
    document.getElementById("loading").replaceWith(el("p", { id: "stats-total" }, `${total} nodes`),
      el("div", { class: "charts" },
        barChart("by-kind", "By kind", byKind),
        barChart("by-state", "By state" + (kind ? ` (${kind})` : ""), byState),
        barChart("by-result", "By result" + (kind ? ` (${kind})` : ""), byResult)));
  } catch (e) {
    document.getElementById("loading").remove();
    say(e.message);
  }
}

header("stats");
document.title = "KernelCI stats";
window.addEventListener("popstate", render);
render();
