// kernelci-rs web pages: what every page shares. The pages are clients of the
// JSON API only (anything they show can be scripted), served from the binary.

/** The API's base URL: the page's own path without its page name, plus /latest. */
export function apiBase() {
  const path = window.location.pathname.replace(/\/(viewer|dashboard|stats|analytics|manage)\/?$/, "");
  const root = path.replace(/\/(latest|v0)$/, "");
  return window.location.origin + root + "/latest";
}

/** The page URL for `page` ("viewer", ...) with `params` (URLSearchParams or pairs). */
export function pageUrl(page, params) {
  const path = window.location.pathname.replace(/\/(viewer|dashboard|stats|analytics|manage)\/?$/, "/" + page);
  const qs = new URLSearchParams(params).toString();
  return path + (qs ? "?" + qs : "");
}

/** An API error with the answer's `detail` (or the network failure) as its message. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The session's token (kept in sessionStorage only: gone when the tab closes). */
export function token() {
  return window.sessionStorage.getItem("kci-token");
}

/** The signed-in user's name, if any. */
export function username() {
  return window.sessionStorage.getItem("kci-user");
}

/**
 * Logs in through `/user/login` (the form the reference's clients use) and keeps
 * the token and the name for this tab only.
 */
export async function login(user, password) {
  const body = new URLSearchParams([["username", user], ["password", password]]);
  const { json } = await api("/user/login", { method: "POST", body,
    headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  window.sessionStorage.setItem("kci-token", json.access_token);
  window.sessionStorage.setItem("kci-user", user);
}

/** Forgets the session's token (a JWT cannot be revoked; it expires). */
export function logout() {
  window.sessionStorage.removeItem("kci-token");
  window.sessionStorage.removeItem("kci-user");
}

/**
 * GETs (or sends) `path` of the API; resolves to `{json, text}`, rejects with an
 * ApiError saying what went wrong.
 */
export async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  const t = token();
  if (t && !headers.Authorization) headers.Authorization = "Bearer " + t;
  let resp;
  try {
    resp = await fetch(apiBase() + path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError("Cannot reach the API (" + apiBase() + "): " + e.message, 0);
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (e) {
    json = null;
  }
  if (!resp.ok) {
    const detail = json && json.detail !== undefined ? json.detail : text;
    const what = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw new ApiError(resp.status + " " + resp.statusText + ": " + what, resp.status);
  }
  return { json, text };
}

/** Nodes per page when a page reads every node of a query. */
const ALL_PAGE = 1000;
/** At most this many pages (so a page never loads more than 20,000 nodes). */
const ALL_MAX_PAGES = 20;

/** Every node of an API query (pairs or URLSearchParams), paged, at most 20,000. */
export async function allNodes(params) {
  const out = [];
  for (let page = 0; page < ALL_MAX_PAGES; page++) {
    const q = new URLSearchParams(params);
    q.set("limit", String(ALL_PAGE));
    q.set("offset", String(page * ALL_PAGE));
    const { json } = await api("/nodes?" + q.toString());
    out.push(...json.items);
    if (json.items.length < ALL_PAGE || out.length >= json.total) break;
  }
  return out;
}

/** `days` days ago as the API's naive UTC timestamp. */
export function since(days) {
  return new Date(Date.now() - days * 86400e3).toISOString().slice(0, 19);
}

/** `/count` of API filter pairs. */
export async function count(pairs) {
  const { json } = await api("/count?" + new URLSearchParams(pairs).toString());
  return json;
}

/**
 * A page's render counter: each call of the returned function starts a render
 * and returns its `stale()`, true once a newer render has started (a back or
 * forward, a new search), so that answers arriving late are dropped, not drawn
 * over the newer page.
 */
export function renderCounter() {
  let generation = 0;
  return () => {
    const mine = ++generation;
    return () => mine !== generation;
  };
}

/** Creates an element: `el("a", {href: "/x"}, "text", child, ...)`. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/**
 * A select of `[value, label]` options kept in the URL parameter `name` of
 * `page` (an empty value removes it); a change pushes the URL and calls `render`.
 */
export function urlSelect(page, name, options, current, render) {
  return el("select", { id: name, "aria-label": name, onchange: () => {
    const next = new URLSearchParams(window.location.search);
    const v = document.getElementById(name).value;
    if (v) next.set(name, v);
    else next.delete(name);
    window.history.pushState(null, "", pageUrl(page, next));
    render();
  } }, options.map(([v, label]) => el("option", { value: v, selected: v === current }, label)));
}

/** Shows `message` in the page's message area (an error unless `kind` says so). */
export function say(message, kind = "error") {
  const box = document.getElementById("message");
  box.replaceChildren();
  if (!message) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.className = "message " + kind;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.textContent = message;
}

/** The page header: the pages' links and the login state. */
export function header(current) {
  const nav = document.getElementById("nav");
  const links = [
    ["viewer", "Viewer"],
    ["dashboard", "Dashboard"],
    ["stats", "Stats"],
    ["analytics", "Analytics"],
    ["manage", "Manage"],
  ].map(([page, label]) =>
    el("a", { href: pageUrl(page, []), class: page === current ? "current" : null }, label),
  );
  const who = username()
    ? el("span", { id: "who", class: "who" }, "signed in as ", el("strong", {}, username()), " ",
      el("button", { type: "button", id: "logout", onclick: () => {
        logout();
        window.location.reload();
      } }, "Log out"))
    : el("a", { id: "login-link", class: "who", href: pageUrl("manage", []) }, "Log in");
  nav.replaceChildren(el("strong", {}, "KernelCI"), ...links, who);
}

/**
 * `url` when it is safe to link (http, https or ftp), else null: node fields are
 * written by API clients, and a `javascript:` link would run in the page.
 */
export function safeHref(url) {
  return typeof url === "string" && /^(https?|ftp):\/\//i.test(url) ? url : null;
}

/** The reference viewer's operators and the API suffix each one stands for. */
export const OPERATORS = { "=": "=", "!=": "__ne=", ">": "__gt=", ">=": "__gte=", "<": "__lt=", "<=": "__lte=" };

/**
 * One `search=` condition as an API filter pair [key, value]: a key of letters,
 * digits and `._-`, then the longest run of `<>!=`, then the value. Anything else
 * (another operator run, another shape) is read as the query-string text it is,
 * key up to the first `=`, as the reference viewer sends it.
 */
export function convertCondition(cond) {
  const m = /^([A-Za-z0-9._-]+)([<>!=]+)(.*)$/s.exec(cond);
  const text = m && OPERATORS[m[2]] !== undefined ? m[1] + OPERATORS[m[2]] + m[3] : cond;
  const i = text.indexOf("=");
  return i < 0 ? [text, ""] : [text.slice(0, i), text.slice(i + 1)];
}

/** A timestamp of the API (naive UTC) shown as "YYYY-MM-DD HH:MM:SS". */
export function when(ts) {
  if (!ts) return "";
  return String(ts).replace("T", " ").replace(/\.\d+$/, "").replace(/\+00:00$/, "");
}

/** A link to node `id`'s page in the viewer. */
export function nodeLink(id, text) {
  return el("a", { href: pageUrl("viewer", [["node_id", id]]), class: "node-link" }, text || id);
}

function resultCell(n) {
  const r = n.result === null || n.result === undefined ? "" : n.result;
  return el("td", { class: "result-" + (r || "none") }, r || "–");
}

/** A table of nodes, each row linking to its node's page. */
export function nodesTable(items) {
  const head = ["id", "kind", "name", "state", "result", "tree / branch", "commit", "platform", "created"];
  const rows = items.map((n) => {
    const rev = (n.data && n.data.kernel_revision) || {};
    return el("tr", { "data-id": n.id },
      el("td", {}, nodeLink(n.id)),
      el("td", {}, n.kind),
      el("td", {}, n.name),
      el("td", {}, n.state),
      resultCell(n),
      el("td", {}, rev.tree ? rev.tree + " / " + (rev.branch || "") : ""),
      el("td", { class: "mono" }, rev.commit ? String(rev.commit).slice(0, 12) : ""),
      el("td", {}, (n.data && n.data.platform) || ""),
      el("td", {}, when(n.created)));
  });
  return el("div", { class: "scroll" }, el("table", { class: "nodes" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)));
}
