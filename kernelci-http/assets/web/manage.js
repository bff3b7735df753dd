// kernelci-rs /manage: the login form; who am I and my recent nodes; for an
// administrator, users (invite, groups, activate/deactivate) and groups, all
// through the existing JSON endpoints. The token stays in this tab's
// sessionStorage only.
import { api, el, header, login, logout, nodesTable, pageUrl, renderCounter, say, token } from "./common.js";

function loginForm(main) {
  const user = el("input", { id: "login-user", autocomplete: "username", required: true });
  const pass = el("input", { id: "login-password", type: "password", autocomplete: "current-password", required: true });
  main.replaceChildren(el("h1", {}, "Log in"), el("form", { id: "login", class: "search login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await login(user.value.trim(), pass.value);
      header("manage");
      render();
    } catch (e) {
      say(e.status === 400 ? "Wrong username or password, or the account is not verified." : e.message);
    }
  } }, el("label", { for: "login-user" }, "Username"), user,
  el("label", { for: "login-password" }, "Password"), pass,
  el("button", { type: "submit", id: "login-go" }, "Log in")));
}

function groupNames(user) {
  return (user.groups || []).map((g) => (typeof g === "string" ? g : g.name));
}

function yesNo(v) {
  return v ? "yes" : "no";
}

/** Users a page of the users card lists unless the URL says `users_limit` (1-500). */
const USERS_PAGE = 100;

/** Moves the users card to `changes` (URL parameters; an empty value removes one). */
function usersAt(changes) {
  const next = new URLSearchParams(window.location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v) next.set(k, v);
    else next.delete(k);
  }
  window.history.pushState(null, "", pageUrl("manage", next));
  render();
}

/**
 * The users card: a page of users (`users_offset`, `users_limit` in the URL),
 * or the one named `user`, each with its groups and activation editable.
 */
async function usersCard() {
  const params = new URLSearchParams(window.location.search);
  const limit = Math.min(500, Math.max(1, parseInt(params.get("users_limit") || "", 10) || USERS_PAGE));
  const offset = Math.max(0, parseInt(params.get("users_offset") || "0", 10) || 0);
  const only = (params.get("user") || "").trim();
  const q = new URLSearchParams([["limit", String(limit)], ["offset", String(offset)]]);
  if (only) q.set("username", only);
  const { json } = await api("/users?" + q.toString());
  const rows = json.items.map((u) => {
    const groups = el("input", { value: groupNames(u).join(", "), "aria-label": "Groups of " + u.username, size: 16 });
    const save = el("button", { type: "button", class: "set-groups", onclick: () => patch(u, {
      groups: groups.value.split(",").map((g) => g.trim()).filter((g) => g) }) }, "Set");
    const toggle = el("button", { type: "button", class: "toggle-active", onclick: () => patch(u, { is_active: !u.is_active }) },
      u.is_active ? "Deactivate" : "Activate");
    return el("tr", { "data-user": u.username },
      el("td", {}, u.username), el("td", {}, u.email), el("td", {}, groups, " ", save),
      el("td", { class: "active" }, yesNo(u.is_active)), el("td", {}, yesNo(u.is_verified)),
      el("td", {}, yesNo(u.is_superuser)), el("td", {}, toggle));
  });
  const last = Math.min(offset + json.items.length, json.total);
  const find = el("input", { id: "find-user", value: only, placeholder: "username", "aria-label": "Find a user" });
  return el("section", { class: "card", id: "users" }, el("h2", {}, "Users ", el("small", { class: "muted" }, String(json.total))),
    el("form", { class: "builder", id: "find", onsubmit: (ev) => {
      ev.preventDefault();
      usersAt({ user: find.value.trim(), users_offset: "" });
    } }, find, el("button", { type: "submit", id: "find-go" }, "Find"),
    only ? el("button", { type: "button", id: "all-users", onclick: () => usersAt({ user: "" }) }, "All users") : null),
    el("div", { class: "pager" },
      el("span", { id: "users-range" }, json.total ? `${offset + 1}–${last} of ${json.total}` : "No user."),
      offset > 0 ? el("button", { type: "button", id: "users-prev",
        onclick: () => usersAt({ users_offset: String(Math.max(0, offset - limit)) }) }, "Previous") : null,
      last < json.total ? el("button", { type: "button", id: "users-next",
        onclick: () => usersAt({ users_offset: String(offset + limit) }) }, "Next") : null),
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {},
      ["user", "e-mail", "groups", "active", "verified", "admin", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows))));
}

async function patch(user, body) {
  try {
    await api("/user/" + user.id, { method: "PATCH", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" } });
    say(`Updated ${user.username}.`, "info");
    await render(true);
  } catch (e) {
    say(e.message);
  }
}

function inviteCard() {
  const f = (id, label, attrs = {}) => [el("label", { for: id }, label), el("input", Object.assign({ id }, attrs))];
  const out = el("div", { id: "invite-result" });
  const form = el("form", { id: "invite", class: "search", onsubmit: async (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const body = {
      username: v("invite-user"),
      email: v("invite-email"),
      groups: v("invite-groups").split(",").map((g) => g.trim()).filter((g) => g),
      is_superuser: document.getElementById("invite-admin").checked,
      send_email: document.getElementById("invite-send").checked,
      return_token: true,
    };
    try {
      const { json } = await api("/user/invite", { method: "POST", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json" } });
      out.replaceChildren(el("p", {}, `Invited ${json.user.username}`,
        json.email_sent ? " (e-mail sent)" : " (no e-mail sent)", ". Invitation link: "),
      el("p", {}, el("a", { id: "invite-url", href: json.invite_url }, json.invite_url)));
      await render(true, out);
    } catch (e) {
      say(e.message);
    }
  } },
  ...f("invite-user", "Username", { required: true }),
  ...f("invite-email", "E-mail", { type: "email", required: true }),
  ...f("invite-groups", "Groups (comma-separated)"),
  el("label", {}, el("input", { id: "invite-admin", type: "checkbox" }), " administrator"),
  el("label", {}, el("input", { id: "invite-send", type: "checkbox", checked: true }), " send the invitation by e-mail"),
  el("button", { type: "submit", id: "invite-go" }, "Invite"));
  return el("section", { class: "card" }, el("h2", {}, "Invite a user"), form, out);
}

async function groupsCard() {
  const { json } = await api("/user-groups?limit=500");
  const name = el("input", { id: "group-name", "aria-label": "New group", required: true });
  return el("section", { class: "card", id: "groups" }, el("h2", {}, "Groups ", el("small", { class: "muted" }, String(json.total))),
    el("ul", {}, json.items.map((g) => el("li", {}, g.name))),
    json.total > json.items.length ? el("p", { class: "muted" }, `The first ${json.items.length} of ${json.total}.`) : null,
    el("form", { class: "builder", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("/user-groups", { method: "POST", body: JSON.stringify({ name: name.value.trim() }),
          headers: { "Content-Type": "application/json" } });
        await render(true);
      } catch (e) {
        say(e.message);
      }
    } }, name, el("button", { type: "submit", id: "group-add" }, "Add group")));
}

/** Starts a render; answers that arrive after the page moved on are dropped. */
const startRender = renderCounter();

/** Draws the page; `keep` keeps the message shown, `carry` is an element kept in place. */
async function render(keep = false, carry = null) {
  const stale = startRender();
  if (!keep) say("");
  const main = document.getElementById("main");
  if (!token()) {
    loginForm(main);
    return;
  }
  try {
    const { json: me } = await api("/whoami");
    const mine = await api("/nodes?" + new URLSearchParams([["owner", me.username], ["sort", "-created"], ["limit", "20"]]));
    const cards = [
      el("section", { class: "card", id: "me" }, el("h2", {}, "You"),
        el("table", { class: "fields" }, el("tbody", {},
          [["username", me.username], ["e-mail", me.email], ["groups", groupNames(me).join(", ") || "none"],
            ["administrator", yesNo(me.is_superuser)], ["verified", yesNo(me.is_verified)]]
            .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { "data-field": k }, v)))))),
      el("section", { class: "card", id: "my-nodes" }, el("h2", {}, "Your recent nodes ",
        el("small", { class: "muted" }, String(mine.json.total))),
      mine.json.items.length ? nodesTable(mine.json.items) : el("p", { class: "muted" }, "None yet.")),
    ];
    if (me.is_superuser) {
      const invite = inviteCard();
      if (carry) invite.querySelector("#invite-result").replaceWith(carry);
      cards.push(invite, await usersCard(), await groupsCard());
    }
    if (stale()) return;
    main.replaceChildren(el("h1", {}, "Manage"), el("div", { class: "cards" }, cards));
  } catch (e) {
    if (stale()) return;
    if (e.status === 401) {
      logout();
      header("manage");
      loginForm(main);
      say("Your session has expired: log in again.");
      return;
    }
    say(e.message);
  }
}

header("manage");
document.title = "KernelCI manage";
window.addEventListener("popstate", () => render());
render();
