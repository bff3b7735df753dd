// kernelci-rs web pages: inline SVG bar charts, drawn by the page itself (no
// chart library for a few horizontal bar charts).
import { el } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/**
 * A horizontal bar chart of `[label, count, href]` rows (`href` null: the bar is
 * not a link), as a figure with `title`; each bar carries `data-label` and
 * `data-count`, and the class `bar-<label>` colours it.
 */
export function barChart(id, title, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const rowH = 28;
  const labelW = 120;
  const barW = 350;
  const chart = svg("svg", { id, class: "chart", role: "img", "aria-label": title,
    viewBox: `0 0 ${labelW + barW + 90} ${rows.length * rowH + 8}`, width: "100%" });
  rows.forEach(([label, count, href], i) => {
    const y = i * rowH + 4;
    const w = Math.max(count > 0 ? 2 : 0, Math.round((count / max) * barW));
    const attrs = { class: "bar", "data-label": label, "data-count": String(count) };
    if (href) attrs.href = href;
    chart.append(svg(href ? "a" : "g", attrs,
      svg("title", {}, `${label}: ${count}`),
      svg("text", { x: labelW - 8, y: y + 18, "text-anchor": "end" }, label),
      svg("rect", { x: labelW, y, width: w, height: rowH - 8, class: "bar-" + label }),
      svg("text", { x: labelW + w + 6, y: y + 18, class: "count" }, String(count))));
  });
  return el("figure", { class: "stat" }, el("figcaption", {}, title), chart);
}
