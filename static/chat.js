// The room page's live client. No framework, no build step. User text is only ever inserted
// with textContent (or into data attributes), never as HTML.
//
// Protocol it relies on (docs/protocol.md):
//   sends    join {room, since}, chat {room, text, client_id, reply_to?}, typing {room, typing},
//            read {room, seq}, edit {room, seq, text}, delete {room, seq},
//            react {room, seq, emoji, on}
//   receives history {messages, complete}, chat {seq, user, text, ts, client_id?},
//            update {seq, message}, presence {users, count, read?: {user: seq}}, join/leave {user},
//            typing {user, typing}, receipt {user, seq}, error {code, message, ref?, retry_after?}
//   A text frame may carry several JSON documents separated by "\n".
//   Close 1008 (kicked, banned, logged out) is final: shown, never retried.
// An ES module (strict by itself). The protocol state (the last seq shown, joined or not, what
// a frame means, the unconfirmed messages by client_id and their resending, the reconnect
// backoff) is protocol.js's, which touches no DOM; this module draws what it decides. What
// needs no DOM lives in modules of its own, unit-tested with node --test (tests/js/).
import { lastEditable, toggleReaction } from "./events.js";
import { OLDER_MARGIN_PX, createOlderLoader } from "./older.js";
import { createPeople } from "./people.js";
import { RoomProtocol } from "./protocol.js";
import { createRenderer } from "./render.js";
import { TypingNotifier } from "./typing.js";
import { endedMessage } from "./text.js";

(function () {
  const root = document.getElementById("room");
  if (!root) return;

  const room = root.dataset.room;
  const me = root.dataset.me;
  const isAdmin = root.dataset.admin === "true";
  const maxText = Number(root.dataset.maxText) || 4000;
  const list = document.getElementById("messages");
  const jump = document.getElementById("jump");
  const statusEl = document.getElementById("status");
  const retry = document.getElementById("retry");
  const typingEl = document.getElementById("typing");
  const peopleEl = document.getElementById("people");
  const peopleCount = document.getElementById("people-count");
  const peopleBox = document.getElementById("people-box");
  const peopleStale = document.getElementById("people-stale");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const counter = document.getElementById("composer-count");
  const formError = document.getElementById("composer-error");
  const ended_ = document.getElementById("ended");
  const baseTitle = document.title;

  const READ_DELAY_MS = 300; // coalesce read markers during a burst
  const TYPING_REF = "typing"; // the ref of typing notices: their refusals are never shown
  const CHANGE_REF = "change"; // edits, deletions, reactions: a refusal shows under the form
  const composing = document.getElementById("composing");
  const composingText = document.getElementById("composing-text");
  let editing = null; // the seq being edited, or null
  let replyTo = null; // the seq being answered, or null

  const readSeqAtLoad = Number(root.dataset.readSeq) || 0;
  let readSent = readSeqAtLoad;
  let readTimer = null;
  let ws = null;
  let reconnectTimer = null;
  let countdown = null;
  let ended = false; // closed with 1008: do not come back by ourselves
  let unseenWhileHidden = 0;
  let unseenBelow = 0;
  const pending = new Map(); // client_id -> {text, el}: what the page shows as "sending…"
  // Limits the server enforces (settings), so that the page stays within them by design.
  const limit = (name, fallback) => Number(root.dataset[name]) || fallback;
  const proto = new RoomProtocol({
    room,
    lastSeq: Number(root.dataset.lastSeq) || 0,
    rate: limit("chatRate", 10),
    burst: limit("chatBurst", 20),
    now: Date.now(),
  });
  const outbox = proto.outbox; // the unconfirmed messages, by client_id
  const typingNotifier = new TypingNotifier({
    rate: limit("typingRate", 1), burst: limit("typingBurst", 5), now: Date.now(),
  });
  let pumpTimer = null;
  const readMarkers = new Map(); // user -> last seq they read

  // Drawing the timeline (render.js), the people panel (people.js), older pages (older.js).
  const {
    localiseTime, regroup, messageElement, addMenu, drawReceipts, applyState, stateOf, hydrate,
  } = createRenderer({ list, me, isAdmin, room, act: (...args) => act(...args) });
  const { setPeopleStale, setPeople, addPerson, removePerson, setTyping, clearTypers } =
    createPeople({
      peopleEl, peopleCount, peopleBox, peopleStale, typingEl, me, isEnded: () => ended,
    });
  const loadOlder = createOlderLoader({
    list, room, oldestSeq: Number(root.dataset.oldestSeq) || 0, messageElement, regroup,
  });

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
    document.title = unseenWhileHidden > 0 ? `(${unseenWhileHidden}) ${baseTitle}` : baseTitle;
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

  // --- connection badge ---

  function setStatus(text, state) {
    statusEl.textContent = text;
    statusEl.dataset.state = state;
    retry.hidden = state !== "reconnecting";
  }

  // --- socket ---

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function rejoin() {
    root.dataset.joined = "false";
    send(proto.join());
  }

  function cancelReconnect() {
    clearTimeout(reconnectTimer);
    clearInterval(countdown);
    reconnectTimer = null;
    countdown = null;
  }

  function connect() {
    cancelReconnect();
    if (ended || ws) return;
    if (!navigator.onLine) {
      setStatus("offline", "offline"); // the "online" event brings us back
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    ws = socket;
    setStatus("connecting…", "connecting");
    socket.addEventListener("open", () => {
      proto.opened();
      setStatus("connected", "connected");
      rejoin();
    });
    socket.addEventListener("message", (event) => {
      // A frame may carry several JSON documents separated by newlines (batching).
      for (const line of String(event.data).split("\n")) {
        if (line) handle(JSON.parse(line));
      }
    });
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
    });
    socket.addEventListener("close", (event) => {
      if (ws !== socket) return; // an old socket we already gave up on
      if (!opened && proto.refusedRepeatedly()) checkSession(); // still logged in?
      lostSocket();
      if (event.code === 1008) {
        // Kicked, banned or logged out elsewhere: coming back by ourselves would be wrong.
        endSession(event.reason || "session ended");
        return;
      }
      scheduleReconnect();
    });
  }

  // The socket is gone: nothing is in flight, who is here is unknown, nobody is typing.
  function lostSocket() {
    ws = null;
    proto.lost();
    root.dataset.joined = "false";
    typingNotifier.reset();
    clearTimeout(pumpTimer);
    clearTypers();
    setPeopleStale(true);
  }

  // The server ended this session (kicked, banned, logged out, password changed): the page
  // says so in place of the composer and the member list, and offers to log in again.
  function endSession(reason) {
    ended = true;
    cancelReconnect();
    root.dataset.ended = "true";
    setStatus("disconnected", "ended");
    input.disabled = true;
    form.hidden = true;
    typingEl.textContent = "";
    peopleEl.replaceChildren();
    peopleCount.textContent = "0";
    peopleStale.hidden = true;
    document.getElementById("ended-text").textContent = endedMessage(reason);
    ended_.hidden = false;
    document.getElementById("login-again").focus();
  }

  // A refused upgrade looks like any network failure to a page; the session may have ended
  // (logged out elsewhere, expired). Ask a plain endpoint rather than retrying forever.
  async function checkSession() {
    try {
      const response = await fetch("/rooms.json", { cache: "no-store" });
      if (response.status !== 401) return;
    } catch (err) {
      return; // the server is unreachable: keep retrying
    }
    lostSocket();
    endSession("signed out");
  }

  function scheduleReconnect() {
    cancelReconnect();
    if (ended) return;
    if (!navigator.onLine) {
      setStatus("offline", "offline");
      return;
    }
    const delay = proto.nextDelay();
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setStatus(`reconnecting in ${left}s`, "reconnecting");
    };
    tick();
    countdown = setInterval(tick, 1000);
    reconnectTimer = setTimeout(connect, delay);
  }

  retry.addEventListener("click", () => {
    proto.resetBackoff();
    connect();
  });

  window.addEventListener("online", () => {
    proto.resetBackoff();
    if (!ws) connect();
  });
  window.addEventListener("offline", () => {
    // The socket is as good as dead; close it now rather than wait for the heartbeat.
    const socket = ws;
    lostSocket();
    cancelReconnect();
    if (socket) socket.close(4000, "browser went offline");
    if (!ended) setStatus("offline", "offline");
  });

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

  function onHistory(frame) {
    const following = atBottom();
    const plan = proto.history(frame);
    if (plan.reset) {
      clearShown();
      if (plan.earlier) notice("Earlier messages are not kept.");
      else if (plan.messages.length === 0) notice("No messages yet. Say hello!", "empty");
    }
    if (plan.missed > 0) {
      notice(`${plan.missed} missed messages are no longer kept.`, "missed");
    }
    for (const m of plan.messages) {
      proto.accept(m); // history is authoritative: its gap is said by the notice above
      addMessage(m);
    }
    // What changed while away (edited, deleted, reactions): shown as it now stands.
    for (const m of plan.changes) applyState(m);
    proto.joinedAt(plan); // what is still unconfirmed goes out again, in order (pump)
    root.dataset.joined = "true"; // tests and styles can tell a live page from a stale one
    regroup();
    renderReceipts();
    if (following) toBottom();
    pump();
    maybeSendRead();
  }

  function handle(frame) {
    if (frame.room !== undefined && frame.room !== room) return;
    switch (frame.type) {
      case "history":
        onHistory(frame);
        break;
      case "chat":
        // Until our history arrives, live frames are covered by it (the server holds the rest).
        switch (proto.chat(frame)) {
          case "wait":
            return;
          case "gap":
            rejoin(); // ask again from what we have
            return;
          default: // new, or already shown ("seen": addMessage drops its pending copy)
        }
        if (addMessage(frame)) {
          regroup();
          renderReceipts();
          setTyping(frame.user, false);
        }
        maybeSendRead();
        break;
      case "presence":
        setPeople(frame.users, frame.count);
        if (frame.read) {
          for (const [user, seq] of Object.entries(frame.read)) setReadMarker(user, seq);
        }
        break;
      case "join":
        addPerson(frame.user);
        break;
      case "leave":
        removePerson(frame.user);
        break;
      case "typing":
        if (frame.user !== me) setTyping(frame.user, frame.typing);
        break;
      case "receipt":
        setReadMarker(frame.user, frame.seq);
        break;
      case "update":
        switch (proto.update(frame)) {
          case "wait":
          case "seen":
            return;
          case "gap":
            rejoin();
            return;
          default:
        }
        proto.shown(frame);
        if (applyState(frame.message)) {
          regroup();
          renderReceipts();
        }
        if (editing === frame.message.seq && frame.message.deleted) stopComposing();
        maybeSendRead();
        break;
      case "error":
        showError(frame);
        break;
      default:
        break;
    }
  }

  function showError(frame) {
    // A typing notice is a courtesy: if one is refused, the person has nothing to do about it.
    if (frame.ref === TYPING_REF) return;
    if (frame.ref === CHANGE_REF) {
      formError.textContent = frame.message;
      return;
    }
    const entry = frame.ref && pending.get(frame.ref);
    if (!entry) {
      formError.textContent = frame.message;
      return;
    }
    if (frame.code === "rate_limited" || frame.code === "unavailable") {
      // Refused for now (a limit, or the server could not store it): this message and every
      // later one wait, then go out again in order, with the same client_ids. Too fast is
      // handled without a word; a storage failure is worth showing until the resend.
      outbox.refused(frame.ref, Math.ceil((frame.retry_after || 1) * 1000), Date.now());
      if (frame.code === "unavailable") explain(entry.el, frame.message);
      pump();
      return;
    }
    // The server will never take this one: it stays, marked, and is not resent.
    outbox.failed(frame.ref);
    pending.delete(frame.ref);
    entry.el.classList.remove("pending");
    entry.el.classList.add("failed");
    explain(entry.el, frame.message);
    pump();
  }

  function explain(el, message) {
    let why = el.querySelector(".why");
    if (!why) {
      why = document.createElement("p");
      why.className = "why";
      why.setAttribute("role", "alert");
      el.append(why);
    }
    why.textContent = message;
  }

  // --- sending ---

  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  // Send what the outbox lets go now, in order, and come back when it may let more go.
  function pump() {
    clearTimeout(pumpTimer);
    pumpTimer = null;
    if (!proto.joined) return;
    for (const frame of proto.take(Date.now())) {
      const entry = pending.get(frame.client_id);
      const why = entry && entry.el.querySelector(".why");
      if (why) why.remove();
      send(frame);
    }
    const wait = outbox.wakeIn(Date.now());
    if (wait !== null) pumpTimer = setTimeout(pump, wait);
  }

  function showCount() {
    const n = input.value.length;
    counter.textContent = `${n} / ${maxText}`;
    counter.classList.toggle("over", n > maxText);
    if (n > maxText) formError.textContent = `Messages are at most ${maxText} characters.`;
    else if (formError.dataset.kind === "length") formError.textContent = "";
    formError.dataset.kind = n > maxText ? "length" : "";
  }

  function submit() {
    const text = input.value;
    formError.textContent = "";
    if (!text.trim() || ended) return;
    if (text.length > maxText) {
      formError.textContent =
        `Messages are at most ${maxText} characters (this one is ${text.length}).`;
      formError.dataset.kind = "length";
      return;
    }
    if (editing !== null) {
      // An edit goes at once (not through the outbox): it is refused while not connected.
      if (!proto.joined || !send({ type: "edit", room, seq: editing, text, ref: CHANGE_REF })) {
        formError.textContent = "Not connected: the edit was not sent.";
        return;
      }
      input.value = "";
      stopComposing();
      showCount();
      return;
    }
    const clientId = newClientId();
    const extra = replyTo !== null ? { reply_to: replyTo } : {};
    const el = messageElement({ user: me, text, ts: Date.now(), ...extra, reply: undefined });
    el.classList.add("pending");
    el.dataset.clientId = clientId;
    removeEmptyNotice();
    list.append(el);
    regroup();
    toBottom();
    pending.set(clientId, { text, el });
    input.value = "";
    showCount();
    typingNotifier.sent(); // the message itself ends "typing…" on every reader's page
    // Not joined (reconnecting, offline): it stays pending and goes out after the re-join.
    outbox.add(clientId, text, extra);
    stopComposing();
    pump();
  }

  // --- editing, replying, deleting, reacting ---

  function startComposing(kind, seq) {
    const m = stateOf(seq);
    if (!m) return;
    editing = kind === "edit" ? seq : null;
    replyTo = kind === "reply" ? seq : null;
    const first = String(m.text).split("\n")[0];
    composingText.textContent = kind === "edit" ? "Editing your message" : `Replying to ${m.user}: ${first}`;
    composing.hidden = false;
    if (kind === "edit") {
      input.value = m.text;
      showCount();
    }
    input.focus();
  }

  function stopComposing() {
    if (editing !== null) input.value = "";
    editing = null;
    replyTo = null;
    composing.hidden = true;
    composingText.textContent = "";
  }

  document.getElementById("composing-cancel").addEventListener("click", () => {
    stopComposing();
    showCount();
    input.focus();
  });

  // A reply's quote jumps to its original: loading older pages first while it is above them.
  async function jumpTo(seq) {
    for (let page = 0; page < 20; page += 1) {
      const li = list.querySelector(`:scope > .msg[data-seq="${Number(seq)}"]`);
      if (li) {
        li.scrollIntoView({ block: "center" });
        li.focus();
        return;
      }
      if (!document.getElementById("older")) return; // nothing older is kept
      await loadOlder();
    }
  }

  function act(kind, seq, emoji) {
    const m = stateOf(seq);
    switch (kind) {
      case "reply":
      case "edit":
        startComposing(kind, seq);
        break;
      case "delete":
        if (window.confirm("Delete this message? Everyone will see that it was deleted.")) {
          if (!send({ type: "delete", room, seq, ref: CHANGE_REF })) {
            formError.textContent = "Not connected: the message was not deleted.";
          }
        }
        break;
      case "toggle":
        if (m) send({ ...toggleReaction(room, m, emoji, me), ref: CHANGE_REF });
        break;
      case "react":
        send({ type: "react", room, seq, emoji, on: true, ref: CHANGE_REF });
        break;
      case "jump":
        jumpTo(seq);
        break;
      default:
    }
  }

  function sendTyping(on) {
    if (on !== null && proto.joined) send({ type: "typing", room, typing: on, ref: TYPING_REF });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "ArrowUp" && input.value === "" && editing === null) {
      // As in Slack: Up in an empty composer edits my last message.
      const mine = [...list.querySelectorAll(":scope > .msg[data-seq]")].map((li) => ({
        seq: Number(li.dataset.seq), user: li.dataset.user,
      }));
      const seq = lastEditable(mine, me);
      if (seq !== null) {
        event.preventDefault();
        startComposing("edit", seq);
      }
    } else if (event.key === "Escape" && !composing.hidden) {
      stopComposing();
      showCount();
    }
  });

  input.addEventListener("input", () => {
    showCount();
    typingChanged();
  });

  let typingTimer = null;
  function typingChanged() {
    clearTimeout(typingTimer);
    if (!proto.joined || ended) return;
    sendTyping(typingNotifier.input(input.value !== "", Date.now()));
    const wait = typingNotifier.retryIn(Date.now());
    if (wait !== null) typingTimer = setTimeout(typingChanged, wait);
  }

  input.addEventListener("blur", () => sendTyping(typingNotifier.stop(Date.now())));

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

  const loadOlderButton = document.getElementById("load-older");
  if (loadOlderButton) loadOlderButton.addEventListener("click", loadOlder);

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

  // --- start ---

  for (const li of list.querySelectorAll(":scope > .msg[data-state]")) hydrate(li);
  for (const t of list.querySelectorAll("time[data-ts]")) localiseTime(t);
  for (const li of list.querySelectorAll(":scope > .msg")) addMenu(li);
  regroup();
  drawUnreadLine();
  const line = document.getElementById("unread-line");
  if (line && list.scrollHeight > list.clientHeight) {
    line.scrollIntoView({ block: "start" });
    unseenBelow = list.querySelectorAll("#unread-line ~ .msg").length;
    if (!atBottom()) showJump();
  } else {
    toBottom();
  }
  showCount();
  // A room opened is a room to write in.
  input.focus({ preventScroll: true });
  connect();
})();
