// The room's timeline around what render.js draws: keeping the reader at the bottom (or saying
// how many new messages are below), notices, the "new since you last read" line, placing a
// message (confirmed ones above the pending ones, my confirmed one in place of its copy), the
// unread count in the title, read markers sent and "seen by N" received. User text reaches the
// DOM only through textContent.

const READ_DELAY_MS = 300; // coalesce read markers during a burst

import { OLDER_MARGIN_PX } from "./older.js";

// ctx: {list, jump, input, me, proto, pending, readSeqAtLoad, renderer, loadOlder, send, pump};
// send and pump belong to the socket and the composer, passed as callbacks.
export function createTimeline(ctx) {
  const { list, jump, input, me, proto, pending, readSeqAtLoad, renderer, loadOlder } = ctx;
  const { send, pump } = ctx;
  const { localiseTime, messageElement, addMenu, drawReceipts, applyState } = renderer;
  const outbox = proto.outbox; // the unconfirmed messages, by client_id
  const baseTitle = document.title;
  const readMarkers = new Map(); // user -> last seq they read
  let readSent = readSeqAtLoad;
  let readTimer = null;
  let unseenWhileHidden = 0;
  let unseenBelow = 0;

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function toBottom() {
    list.scrollTop = list.scrollHeight;
    unseenBelow = 0;
    jump.hidden = true;
  }

  function showJump() {
    jump.textContent = unseenBelow > 1 ? `${unseenBelow} new messages ↓` : "New messages ↓";
    jump.hidden = false;
  }

  function notice(text, className) {
    const li = document.createElement("li");
    li.className = "notice" + (className ? " " + className : "");
    li.textContent = text;
    insertConfirmed(li);
    return li;
  }

  function removeEmptyNotice() {
    const empty = list.querySelector(".notice.empty");
    if (empty) empty.remove();
  }

  // Confirmed messages go above the pending ones: pending messages always sit at the bottom.
  function insertConfirmed(el) {
    const firstPending = list.querySelector(":scope > .msg.pending");
    list.insertBefore(el, firstPending);
  }

  function dropPending(clientId) {
    const entry = pending.get(clientId);
    outbox.acked(clientId);
    if (!entry) return false;
    pending.delete(clientId);
    entry.el.remove();
    pump();
    return true;
  }

  // Returns true when the message was shown (it was new).
  function addMessage(m) {
    if (proto.isShown(m)) {
      // Already shown (a resend's ack, or a history overlap): never twice.
      if (m.client_id) dropPending(m.client_id);
      return false;
    }
    const following = atBottom();
    removeEmptyNotice();
    let wasMine = true;
    if (!m.client_id || !confirmInPlace(m)) {
      wasMine = m.client_id ? dropPending(m.client_id) : false;
      insertConfirmed(messageElement(m));
    }
    proto.shown(m);
    if (following || wasMine) {
      toBottom();
    } else if (m.user !== me) {
      unseenBelow += 1;
      showJump();
    }
    if (document.hidden && m.user !== me) {
      unseenWhileHidden += 1;
      updateTitle();
    }
    return true;
  }

  // My message came back stored. When it is the oldest one still sending, it is already where
  // the stored one goes: it becomes that one, so a screen reader does not hear it twice.
  function confirmInPlace(m) {
    const entry = pending.get(m.client_id);
    if (!entry || list.querySelector(":scope > .msg.pending") !== entry.el) return false;
    pending.delete(m.client_id);
    outbox.acked(m.client_id);
    const el = entry.el;
    el.classList.remove("pending", "failed");
    el.dataset.seq = String(m.seq);
    el.dataset.ts = String(m.ts);
    const time = el.querySelector("time");
    time.dataset.ts = String(m.ts);
    time.dateTime = new Date(m.ts).toISOString();
    localiseTime(time);
    const why = el.querySelector(".why");
    if (why) why.remove();
    applyState(m); // its state (a reply's quote) as the server stored it
    addMenu(el);
    pump();
    return true;
  }

  function updateTitle() {
    // With notifications (notify.js), the title counts this room's messages and the others'
    // notifications together.
    if (ctx.titleCount) ctx.titleCount("room", unseenWhileHidden);
    else document.title = unseenWhileHidden > 0 ? `(${unseenWhileHidden}) ${baseTitle}` : baseTitle;
  }

  // --- the "new since you last read" line ---

  function drawUnreadLine() {
    if (readSeqAtLoad <= 0) return; // never opened: no line, nothing is "new"
    for (const li of list.querySelectorAll(":scope > .msg[data-seq]")) {
      if (Number(li.dataset.seq) > readSeqAtLoad && li.dataset.user !== me) {
        const line = document.createElement("li");
        line.className = "unread-line";
        line.id = "unread-line";
        line.setAttribute("role", "separator");
        line.textContent = "New since you last read";
        list.insertBefore(line, li);
        return;
      }
    }
  }

  // --- read markers and receipts ---

  // Leading edge at once (a quick glance counts), then at most one more per READ_DELAY_MS.
  function maybeSendRead() {
    if (document.visibilityState !== "visible" || !atBottom() || readTimer !== null) return;
    const frame = proto.read(readSent);
    if (frame === null) return;
    if (send(frame)) readSent = frame.seq;
    readTimer = setTimeout(() => {
      readTimer = null;
      maybeSendRead();
    }, READ_DELAY_MS);
  }

  // "Seen by N" sits under my latest confirmed message; N counts the others who read up to it.
  function renderReceipts() {
    // The line adds height under the newest message: keep a reader at the bottom there.
    const following = atBottom();
    drawReceipts(readMarkers);
    if (following) toBottom();
  }

  function setReadMarker(user, seq) {
    if ((readMarkers.get(user) || 0) >= seq) return;
    readMarkers.set(user, seq);
    renderReceipts();
  }

  // The server's room is behind what the page shows (restored from a backup, a lagging
  // replica): drop every confirmed message and notice, keeping only what is still unsent, and
  // show the room as a fresh page load would.
  function clearShown() {
    for (const li of [...list.children]) {
      if (!li.classList.contains("pending")) li.remove();
    }
    readSent = 0;
    readMarkers.clear(); // the presence frame that follows brings the room's markers
  }

  // The server-rendered page: the unread line, and where the reader starts.
  function start() {
    drawUnreadLine();
    const line = document.getElementById("unread-line");
    if (line && list.scrollHeight > list.clientHeight) {
      line.scrollIntoView({ block: "start" });
      unseenBelow = list.querySelectorAll("#unread-line ~ .msg").length;
      if (!atBottom()) showJump();
    } else {
      toBottom();
    }
  }

  list.addEventListener("scroll", () => {
    if (list.scrollTop < OLDER_MARGIN_PX) loadOlder();
    if (atBottom()) {
      unseenBelow = 0;
      jump.hidden = true;
      maybeSendRead();
    }
  });

  // Up and down move through the messages (each shows its time when focused).
  list.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    const msgs = [...list.querySelectorAll(":scope > .msg")];
    if (msgs.length === 0) return;
    const at = msgs.indexOf(document.activeElement);
    let next;
    if (at < 0) next = msgs.length - 1;
    else next = Math.min(msgs.length - 1, Math.max(0, at + (event.key === "ArrowUp" ? -1 : 1)));
    event.preventDefault();
    msgs[next].focus();
  });

  jump.addEventListener("click", () => {
    toBottom();
    maybeSendRead();
    input.focus();
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      unseenWhileHidden = 0;
      updateTitle();
      maybeSendRead();
    }
  });

  return {
    atBottom, toBottom, notice, removeEmptyNotice, addMessage, renderReceipts, setReadMarker,
    maybeSendRead, clearShown, start,
  };
}
