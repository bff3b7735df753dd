// kernelci-rs web pages: result matrices (the viewer's kbuild matrix, the
// dashboard's heatmaps). A row per node name, a column per commit, oldest
// first; a cell is the most recently updated node of that name and commit (the
// last retry), coloured by its result, then its state, linking to its page.
import { el, pageUrl } from "./common.js";

/** A node's cell: its label and class, by result, then state. */
function cellOf(n) {
  if (!n) return ["-", "cell-none"];
  if (n.result === "pass") return ["PASS", "cell-pass"];
  if (n.result === "fail") return ["FAIL", "cell-fail"];
  if (n.state === "running") return ["RUN", "cell-run"];
  return ["?", "cell-other"];
}

/**
 * The matrix of `nodes` (each with `data.kernel_revision.commit`) as a table
 * `id` whose corner says `corner`; returns the table and how many commits and
 * names it has.
 */
export function resultMatrix(id, corner, nodes) {
  const firstSeen = new Map();
  const cells = new Map();
  for (const n of nodes) {
    const commit = (n.data && n.data.kernel_revision && n.data.kernel_revision.commit) || "";
    if (!firstSeen.has(commit) || n.created < firstSeen.get(commit).created) firstSeen.set(commit, n);
    const key = n.name + "\n" + commit;
    const prev = cells.get(key);
    if (!prev || n.updated > prev.updated) cells.set(key, n);
  }
  const commits = [...firstSeen.keys()].sort((a, b) => (firstSeen.get(a).created < firstSeen.get(b).created ? -1 : 1));
  const names = [...new Set(nodes.map((n) => n.name))].sort();
  const head = el("tr", {}, el("th", {}, corner), commits.map((c) => {
    const rev = firstSeen.get(c).data.kernel_revision;
    return el("th", { class: "commit", title: rev.describe || c }, c.slice(0, 12));
  }));
  const rows = names.map((name) => el("tr", { "data-name": name }, el("th", {}, name), commits.map((c) => {
    const n = cells.get(name + "\n" + c);
    const [label, cls] = cellOf(n);
    return el("td", { class: "cell " + cls, "data-commit": c, title: n ? "retry " + (n.retry_counter || 0) : "" },
      n ? el("a", { href: pageUrl("viewer", [["node_id", n.id]]) }, label) : label);
  })));
  const table = el("div", { class: "scroll" },
    el("table", { id, class: "matrix" }, el("thead", {}, head), el("tbody", {}, rows)));
  return { table, commits: commits.length, names: names.length };
}
