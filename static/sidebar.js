// The room page's rooms sidebar stays live: unread and mention counts (and rooms that appear) polled from
// /rooms.json, as the rooms list does. The open room never shows a badge: it is being read.
// Room names only ever go in as text.
const nav = document.getElementById("rooms-nav");
const POLL_MS = 3000;
let timer = null;

function roomItem(r) {
  const li = document.createElement("li");
  li.dataset.room = r.name;
  const link = document.createElement("a");
  link.href = "/rooms/" + encodeURIComponent(r.name);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = "#" + r.name;
  link.append(name, " ");
  if (r.private) {
    const mark = document.createElement("span");
    mark.className = "private-mark";
    mark.title = "private room";
    mark.textContent = "private";
    link.append(mark, " ");
  }
  const unread = document.createElement("span");
  unread.className = "unread";
  const n = document.createElement("span");
  n.className = "n";
  const words = document.createElement("span");
  words.className = "visually-hidden";
  words.textContent = " unread";
  unread.append(n, words);
  const mentions = document.createElement("span");
  mentions.className = "mentions";
  mentions.title = "mentions of you";
  const m = document.createElement("span");
  m.className = "n";
  const mWords = document.createElement("span");
  mWords.className = "visually-hidden";
  mWords.textContent = " mentions";
  mentions.append("@", m, mWords);
  link.append(unread, " ", mentions);
  li.append(link);
  return li;
}

function render(list, current, rooms) {
  for (const r of rooms) {
    let li = list.querySelector(`li[data-room="${CSS.escape(r.name)}"]`);
    if (!li) {
      li = roomItem(r);
      list.append(li);
    }
    const unread = li.querySelector(".unread");
    unread.querySelector(".n").textContent = String(r.unread);
    unread.hidden = r.unread === 0 || r.name === current;
    showMentions(li, r, current);
  }
}

// Beside the unread count: how many of those mention the reader.
function showMentions(li, r, current) {
  const badge = li.querySelector(".mentions");
  if (!badge) return;
  badge.querySelector(".n").textContent = String(r.mentions || 0);
  badge.hidden = !r.mentions || r.name === current;
}

// Direct messages: presence and unread on the entries shown.
function renderDirect(current, direct) {
  for (const d of direct || []) {
    const li = document.querySelector(`#direct-list li[data-room="${CSS.escape(d.name)}"]`);
    if (!li) continue;
    const presence = li.querySelector(".presence");
    presence.dataset.online = d.online ? "true" : "false";
    presence.title = d.online ? "online" : "away";
    const unread = li.querySelector(".unread");
    unread.querySelector(".n").textContent = String(d.unread);
    unread.hidden = d.unread === 0 || d.name === current;
    showMentions(li, d, current);
  }
}

if (nav) {
  const list = document.getElementById("room-list");
  const current = nav.dataset.current;
  const poll = async () => {
    clearTimeout(timer);
    try {
      const response = await fetch("/rooms.json", { headers: { Accept: "application/json" } });
      if (response.status === 401) return; // the room page says the session ended
      if (response.ok) {
        const data = await response.json();
        render(list, current, data.rooms);
        renderDirect(current, data.direct);
      }
    } catch (err) {
      // Offline or restarting: the room's status badge says so; try again on the next tick.
    }
    if (!document.hidden) timer = setTimeout(poll, POLL_MS);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  timer = setTimeout(poll, POLL_MS);
}
