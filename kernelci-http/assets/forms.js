// kernelci-rs pages: submits the invite and accept-invite forms to the JSON API.
"use strict";
function kciForm(formId, url, build, auth) {
  const form = document.getElementById(formId);
  const out = document.getElementById(formId + "-result");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    const headers = { "Content-Type": "application/json" };
    if (auth && data.admin_token) headers["Authorization"] = "Bearer " + data.admin_token;
    try {
      const resp = await fetch(url, { method: "POST", headers, body: JSON.stringify(build(data)) });
      const text = await resp.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      out.textContent = resp.status + " " + resp.statusText + "\n" + shown;
    } catch (e) {
      out.textContent = "Request failed: " + e;
    }
  });
}
