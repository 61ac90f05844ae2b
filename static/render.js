// The room page's timeline, drawn: times in the reader's locale, day separators and author
// groups, a message's element (its text as text, or the server's sanitized markup of its
// formatting: drawText) with its "edited" mark, the quote
// of what it answers and its reactions, the message menu (reply, react, edit, delete), and
// "seen by N". The messages' latest states are kept by seq (`states`), so a quote shows its
// original as it now stands. chat.js decides what to draw (with protocol.js and events.js).
import { drawFiles } from "./attachments.js";
import { COMMON_EMOJI, quoteText, quoteView, reactionView } from "./events.js";
import { formatFull, formatTime } from "./text.js";

const GROUP_GAP_MS = 5 * 60 * 1000; // one author's messages within 5 minutes form a group

// list: the messages' <ol>; me: this user's name; isAdmin: may delete anyone's message; room:
// its name; act(kind, seq, extra): a menu item or a reaction was chosen (chat.js sends it).
// `decorate(li, m)` runs after a message's body is drawn (notify.js highlights mentions).
export function createRenderer({ list, me, isAdmin, room, act = () => {}, decorate = () => {} }) {
  const states = new Map(); // seq -> the message's latest state
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
    li.append(meta, text);
    drawState(li, m);
    addMenu(li);
    return li;
  }

  function byseq(seq) {
    return list.querySelector(`:scope > .msg[data-seq="${Number(seq)}"]`);
  }

  // A message's text. The one use of innerHTML in the client, and why it is safe: `html` is
  // the server's rendering of the message's formatting (chat/formatting.py), passed through an
  // allowlist sanitizer (nh3: only p, br, strong, em, code, pre, blockquote and a with an
  // http(s) href), never anything a client wrote; the CSP forbids inline script besides.
  // Without `html`, the text is inserted as text. A plain message is a paragraph; a formatted
  // one a div, as it holds paragraphs, quotes and code blocks of its own.
  function drawText(li, m) {
    const formatted = typeof m.html === "string" && !m.deleted;
    let box = li.querySelector(":scope > .text");
    const tag = formatted ? "DIV" : "P";
    if (box.tagName !== tag) {
      const other = document.createElement(tag);
      box.replaceWith(other);
      box = other;
    }
    box.className = formatted ? "text formatted" : "text";
    if (formatted) box.innerHTML = m.html;
    else box.textContent = m.text;
  }

  // A message's state beyond its text: kept by seq, drawn on its element (if shown).
  function drawState(li, m) {
    if (m.seq !== undefined) states.set(m.seq, m);
    drawText(li, m);
    drawFiles(li, m.files);
    for (const old of li.querySelectorAll(":scope .edited, :scope > .quote, :scope > .reactions")) {
      old.remove();
    }
    if (m.edited_at) {
      const mark = document.createElement("span");
      mark.className = "edited";
      mark.tabIndex = 0; // the time shows on focus too
      mark.textContent = "(edited)";
      mark.title = "Edited " + formatFull(m.edited_at);
      mark.setAttribute("aria-label", "edited " + formatFull(m.edited_at));
      li.querySelector(".meta time").after(" ", mark);
    }
    const quote = quoteView(m, (seq) => states.get(seq));
    if (quote) {
      const q = document.createElement("button");
      q.type = "button";
      q.className = "quote link";
      q.dataset.state = quote.state;
      q.dataset.replyTo = String(quote.seq);
      q.textContent = quoteText(quote);
      if (quote.state === "kept") q.addEventListener("click", () => act("jump", quote.seq));
      else q.disabled = true;
      li.querySelector(".meta").after(q);
    }
    const view = reactionView(m.reactions, me);
    if (view.length > 0) {
      const box = document.createElement("div");
      box.className = "reactions";
      for (const r of view) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "reaction" + (r.mine ? " mine" : "");
        b.dataset.emoji = r.emoji;
        b.setAttribute("aria-pressed", r.mine ? "true" : "false");
        b.title = r.names; // who reacted, on hover; and in the label on focus
        b.setAttribute("aria-label", `${r.emoji} ${r.count}: ${r.names}`);
        const n = document.createElement("span");
        n.className = "n";
        n.textContent = String(r.count);
        b.append(r.emoji, " ", n);
        b.addEventListener("click", () => act("toggle", m.seq, r.emoji));
        box.append(b);
      }
      li.append(box);
    }
    decorate(li, m);
  }

  // The server's current state of message `m.seq`: drawn where it is shown (a deleted one
  // goes), and every reply quoting it says so. Returns whether the timeline changed.
  function applyState(m) {
    const li = byseq(m.seq);
    if (m.deleted) {
      states.set(m.seq, m);
      if (li) li.remove();
    } else if (li) {
      drawState(li, m);
      addMenu(li, true);
    } else if (states.has(m.seq)) {
      states.set(m.seq, m);
    }
    for (const reply of list.querySelectorAll(`:scope > .msg > .quote[data-reply-to="${Number(m.seq)}"]`)) {
      const replyLi = reply.parentElement;
      const state = states.get(Number(replyLi.dataset.seq));
      if (state) drawState(replyLi, state);
    }
    return Boolean(li);
  }

  function stateOf(seq) {
    return states.get(Number(seq));
  }

  // The server-rendered page carries each message's state (data-state): drawn as a live one.
  function hydrate(li) {
    if (!li.dataset.state) return;
    drawState(li, JSON.parse(li.dataset.state));
    delete li.dataset.state;
  }

  // Every stored message gets a menu: reply and react; its author edits and deletes it; an
  // admin deletes anyone's (confirmed on its own page).
  function addMenu(li, again = false) {
    if (!li.dataset.seq) return;
    const old = li.querySelector(".msg-menu");
    if (old && !again) return;
    if (old) old.remove();
    const seq = Number(li.dataset.seq);
    const mine = li.dataset.user === me;
    const menu = document.createElement("details");
    menu.className = "msg-menu";
    const summary = document.createElement("summary");
    summary.textContent = "⋯";
    summary.setAttribute("aria-label", "Message actions");
    const items = document.createElement("div");
    items.className = "menu-items";
    const item = (label, kind) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link";
      b.textContent = label;
      b.addEventListener("click", () => {
        menu.open = false;
        act(kind, seq);
      });
      items.append(b);
      return b;
    };
    item("Reply", "reply");
    if (mine) item("Edit", "edit");
    if (mine) item("Delete…", "delete").classList.add("danger");
    else if (isAdmin) {
      const del = document.createElement("a");
      del.className = "danger";
      const query = new URLSearchParams({
        action: "delete", room, seq: li.dataset.seq, next: location.pathname,
      });
      del.href = "/admin/confirm?" + query.toString();
      del.textContent = "Delete…";
      items.append(del);
    }
    const picker = document.createElement("div");
    picker.className = "picker";
    picker.setAttribute("role", "group");
    picker.setAttribute("aria-label", "React");
    for (const emoji of COMMON_EMOJI) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "pick";
      b.textContent = emoji;
      b.setAttribute("aria-label", "React with " + emoji);
      b.addEventListener("click", () => {
        menu.open = false;
        act("toggle", seq, emoji);
      });
      picker.append(b);
    }
    const other = document.createElement("input");
    other.className = "pick-other";
    other.maxLength = 16;
    other.placeholder = "any emoji";
    other.setAttribute("aria-label", "React with another emoji (type it, then Enter)");
    other.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !other.value.trim()) return;
      event.preventDefault();
      menu.open = false;
      act("react", seq, other.value.trim());
      other.value = "";
    });
    picker.append(other);
    items.append(picker);
    menu.append(summary, items);
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

  return {
    localiseTime, regroup, messageElement, addMenu, drawReceipts, applyState, stateOf, hydrate,
  };
}
