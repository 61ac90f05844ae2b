// The admin page stays live: the online table is rebuilt from /admin/online.json every few
// seconds. Names and rooms only ever go in as text.
"use strict";

(function () {
  const table = document.getElementById("online");
  if (!table) return;
  const body = table.tBodies[0];
  const status = document.getElementById("admin-status");
  const POLL_MS = 2000;
  let timer = null;

  function formatTime(ms) {
    const d = new Date(ms);
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
  }

  function cell(...children) {
    const td = document.createElement("td");
    td.append(...children);
    return td;
  }

  function row(u) {
    const tr = document.createElement("tr");
    tr.dataset.user = u.username;
    const rooms = [];
    u.rooms.forEach((name, i) => {
      if (i > 0) rooms.push(", ");
      const a = document.createElement("a");
      a.href = "/rooms/" + encodeURIComponent(name);
      a.textContent = "#" + name;
      rooms.push(a);
    });
    const connections = cell(String(u.connections));
    connections.className = "connections";
    const since = document.createElement("time");
    since.dateTime = new Date(u.since).toISOString();
    since.textContent = formatTime(u.since);
    since.title = new Date(u.since).toLocaleString();
    tr.append(cell(u.username), cell(...rooms), connections, cell(u.nodes.join(", ")), cell(since));
    return tr;
  }

  function render(online) {
    if (online.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "nobody";
      const td = cell("Nobody is online.");
      td.colSpan = 5;
      tr.append(td);
      body.replaceChildren(tr);
    } else {
      body.replaceChildren(...online.map(row));
    }
    status.textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const response = await fetch("/admin/online.json", { headers: { Accept: "application/json" } });
      if (response.status === 401 || response.status === 403) {
        status.textContent = "You are no longer allowed to see this page: reload it.";
        return;
      }
      if (response.ok) render((await response.json()).online);
      else status.textContent = `Could not refresh (HTTP ${response.status}); retrying.`;
    } catch (err) {
      status.textContent = "Could not reach the server; retrying.";
    }
    timer = setTimeout(poll, POLL_MS);
  }

  for (const t of table.querySelectorAll("time[datetime]")) {
    const ms = Date.parse(t.dateTime);
    t.textContent = formatTime(ms);
    t.title = new Date(ms).toLocaleString();
  }
  timer = setTimeout(poll, POLL_MS);
})();
