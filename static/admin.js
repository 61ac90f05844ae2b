// The admin page stays live: the online table is rebuilt from /admin/online.json every few
// seconds. Names and rooms only ever go in as text. Every time on the page is written the same
// way, in the reader's locale (static/text.js).
import { formatFull, formatWhen } from "./text.js";

const table = document.getElementById("online");
const POLL_MS = 2000;
let timer = null;

function localise(t) {
  const ms = Date.parse(t.dateTime);
  t.textContent = formatWhen(ms);
  t.title = formatFull(ms);
}

function cell(...children) {
  const td = document.createElement("td");
  td.append(...children);
  return td;
}

// Kick and Ban go through the confirmation page, as the server-rendered rows do.
function action(name, label, username) {
  const a = document.createElement("a");
  a.className = "button danger small";
  a.href = `/admin/confirm?action=${name}&username=${encodeURIComponent(username)}`;
  a.textContent = label;
  return a;
}

function row(u, me) {
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
  localise(since);
  const actions = u.username === me
    ? cell()
    : cell(action("kick", "Kick", u.username), " ", action("ban", "Ban", u.username));
  actions.className = "actions";
  tr.append(cell(u.username), cell(...rooms), connections, cell(u.nodes.join(", ")), cell(since),
    actions);
  return tr;
}

if (table) {
  const body = table.tBodies[0];
  const status = document.getElementById("admin-status");
  const me = table.dataset.me;

  const render = (online) => {
    if (online.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "nobody";
      const td = cell("Nobody is online.");
      td.colSpan = 6;
      tr.append(td);
      body.replaceChildren(tr);
    } else {
      body.replaceChildren(...online.map((u) => row(u, me)));
    }
    status.textContent = "Updated " + formatWhen(Date.now());
  };

  const poll = async () => {
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
  };

  timer = setTimeout(poll, POLL_MS);
}

for (const t of document.querySelectorAll("main time[datetime]")) localise(t);
