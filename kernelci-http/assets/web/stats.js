// kernelci-rs /stats: how many nodes of each kind, state and result were created
// in a time window, as bar charts; each bar opens those nodes in the viewer.
//
// URL parameters (ours; the reference's page kept no state in its URL):
// `window=24h|7d|30d|all` (default 7d), `kind=K` to restrict the state and result
// charts to one kind. Every figure is one `/count` of the JSON API.
import { barChart } from "./charts.js";
import { api, convertCondition, el, header, pageUrl, say, since, urlSelect } from "./common.js";

const WINDOWS = { "24h": 1, "7d": 7, "30d": 30, all: 0 };
const KINDS = ["checkout", "kbuild", "job", "test", "process", "regression"];
const STATES = ["running", "available", "closing", "done"];
const RESULTS = ["pass", "fail", "skip", "incomplete", "null"];

async function counts(base, field, values) {
  return Promise.all(values.map(async (v) => {
    const conds = [...base, `${field}=${v}`];
    const q = new URLSearchParams(conds.map(convertCondition));
    const { json } = await api("/count?" + q.toString());
    return [v, json, pageUrl("viewer", conds.map((c) => ["search", c]))];
  }));
}

async function render() {
  say("");
  const main = document.getElementById("main");
  const params = new URLSearchParams(window.location.search);
  const win = Object.hasOwn(WINDOWS, params.get("window")) ? params.get("window") : "7d";
  const kind = KINDS.includes(params.get("kind")) ? params.get("kind") : "";
  const choose = (name, options, current) => urlSelect("stats", name, options, current, render);
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
