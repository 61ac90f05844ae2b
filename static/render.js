// The room page's timeline, drawn: times in the reader's locale, day separators and author
// groups, a message's element (its text only ever as text), the admin's message menu, and
// "seen by N". DOM only, no state: chat.js decides what to draw (with protocol.js).
import { formatFull, formatTime } from "./text.js";

const GROUP_GAP_MS = 5 * 60 * 1000; // one author's messages within 5 minutes form a group

// list: the messages' <ol>; me: this user's name; isAdmin: show the message menu; room: its name.
export function createRenderer({ list, me, isAdmin, room }) {
  function localiseTime(t) {
    const ms = Number(t.dataset.ts);
    t.textContent = formatTime(ms);
    t.title = formatFull(ms);
  }

  function dayKey(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  }

  function dayLabel(ms) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(ms) === dayKey(today.getTime())) return "Today";
    if (dayKey(ms) === dayKey(yesterday.getTime())) return "Yesterday";
    return new Date(ms).toLocaleDateString([], { weekday: "long", month: "long", day: "numeric" });
  }

  // Day separators, and groups: a message continues its author's group when the previous
  // message is theirs, recent and on the same day. Run after every change to the list.
  function regroup() {
    for (const old of list.querySelectorAll(":scope > .day")) old.remove();
    let prev = null;
    let day = null;
    for (const li of [...list.children]) {
      if (!li.classList.contains("msg")) {
        prev = null;
        continue;
      }
      const ts = Number(li.dataset.ts);
      if (dayKey(ts) !== day) {
        day = dayKey(ts);
        const sep = document.createElement("li");
        sep.className = "day";
        sep.setAttribute("role", "separator");
        sep.textContent = dayLabel(ts);
        list.insertBefore(sep, li);
        prev = null;
      }
      const cont = prev !== null && prev.dataset.user === li.dataset.user
        && ts - Number(prev.dataset.ts) < GROUP_GAP_MS;
      li.classList.toggle("cont", cont);
      prev = li;
    }
  }

  // --- rendering ---

  function messageElement(m) {
    const li = document.createElement("li");
    li.className = "msg" + (m.user === me ? " mine" : "");
    li.tabIndex = -1; // arrow keys move through the list; focus shows the time
    if (m.seq !== undefined) li.dataset.seq = String(m.seq);
    li.dataset.user = m.user;
    li.dataset.ts = String(m.ts);
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.user;
    const time = document.createElement("time");
    time.dataset.ts = String(m.ts);
    time.dateTime = new Date(m.ts).toISOString();
    localiseTime(time);
    meta.append(author, " ", time);
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = m.text;
    li.append(meta, text);
    addMenu(li);
    return li;
  }

  // Admins get a menu on each stored message, with "Delete…" (confirmed on its own page).
  function addMenu(li) {
    if (!isAdmin || !li.dataset.seq || li.querySelector(".msg-menu")) return;
    const menu = document.createElement("details");
    menu.className = "msg-menu";
    const summary = document.createElement("summary");
    summary.textContent = "⋯";
    summary.setAttribute("aria-label", "Message actions");
    const del = document.createElement("a");
    del.className = "danger";
    const query = new URLSearchParams({
      action: "delete", room, seq: li.dataset.seq, next: location.pathname,
    });
    del.href = "/admin/confirm?" + query.toString();
    del.textContent = "Delete…";
    menu.append(summary, del);
    li.querySelector(".meta").append(menu);
  }

  // readMarkers: user -> the last seq they read.
  function drawReceipts(readMarkers) {
    for (const old of list.querySelectorAll(".seen")) old.remove();
    const mine = list.querySelectorAll(":scope > .msg.mine[data-seq]");
    const last = mine[mine.length - 1];
    if (!last) return;
    const seq = Number(last.dataset.seq);
    const names = [...readMarkers.entries()]
      .filter(([user, read]) => user !== me && read >= seq)
      .map(([user]) => user)
      .sort();
    if (names.length === 0) return;
    const seen = document.createElement("button");
    seen.type = "button";
    seen.className = "seen";
    seen.textContent = `seen by ${names.length}`;
    seen.dataset.names = names.join(", ");
    seen.title = names.join(", ");
    seen.setAttribute("aria-label", `Seen by ${names.join(", ")}`);
    last.append(seen);
  }

  return { localiseTime, regroup, messageElement, addMenu, drawReceipts };
}
