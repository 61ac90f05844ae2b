// The room page's socket: connecting, reconnecting with backoff (a countdown in the connection
// badge, "Retry now", the browser's online/offline events), the end of a session (close 1008),
// and what each frame received does to the page. protocol.js decides; this module draws.
//
// Frames (docs/protocol.md): receives history {messages, complete}, chat {seq, user, text, ts,
// client_id?}, update {seq, message}, presence {users, count, read?: {user: seq}}, join/leave {user},
// typing {user, typing}, receipt {user, seq}, error {code, message, ref?, retry_after?}.
// A text frame may carry several JSON documents separated by "\n".
// Close 1008 (kicked, banned, logged out) is final: shown, never retried.
import { endedMessage } from "./text.js";

// ctx: {root, room, me, proto, elements: {statusEl, retry, form, input, typingEl, peopleEl,
// peopleCount, peopleStale, endedBox}, timeline, people, renderer: {applyState, regroup},
// composer: {pump, showError, onLost, onUpdate}} (the composer's as callbacks).
export function createRoomSocket(ctx) {
  const { root, room, me, proto, elements, timeline, people, renderer, composer } = ctx;
  const onNotify = ctx.onNotify || (() => {});
  const onLevel = ctx.onLevel || (() => {});
  const { statusEl, retry, form, input, typingEl, peopleEl, peopleCount, peopleStale } = elements;
  const { applyState, regroup } = renderer;
  let ws = null;
  let reconnectTimer = null;
  let countdown = null;
  let ended = false; // closed with 1008: do not come back by ourselves

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
    composer.onLost();
    people.clearTypers();
    people.setPeopleStale(true);
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
    elements.endedBox.hidden = false;
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

  // --- frames ---

  function onHistory(frame) {
    const following = timeline.atBottom();
    const plan = proto.history(frame);
    if (plan.reset) {
      timeline.clearShown();
      if (plan.earlier) timeline.notice("Earlier messages are not kept.");
      else if (plan.messages.length === 0) timeline.notice("No messages yet. Say hello!", "empty");
    }
    if (plan.missed > 0) {
      timeline.notice(`${plan.missed} missed messages are no longer kept.`, "missed");
    }
    for (const m of plan.messages) {
      proto.accept(m); // history is authoritative: its gap is said by the notice above
      timeline.addMessage(m);
    }
    // What changed while away (edited, deleted, reactions): shown as it now stands.
    for (const m of plan.changes) applyState(m);
    proto.joinedAt(plan); // what is still unconfirmed goes out again, in order (pump)
    root.dataset.joined = "true"; // tests and styles can tell a live page from a stale one
    regroup();
    timeline.renderReceipts();
    if (following) timeline.toBottom();
    composer.pump();
    timeline.maybeSendRead();
  }

  function handle(frame) {
    // A notification may be about any room the reader is told of (notify.js).
    if (frame.type === "notify") {
      onNotify(frame);
      return;
    }
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
        if (timeline.addMessage(frame)) {
          regroup();
          timeline.renderReceipts();
          people.setTyping(frame.user, false);
        }
        timeline.maybeSendRead();
        break;
      case "presence":
        people.setPeople(frame.users, frame.count);
        if (frame.read) {
          for (const [user, seq] of Object.entries(frame.read)) timeline.setReadMarker(user, seq);
        }
        break;
      case "join":
        people.addPerson(frame.user);
        break;
      case "leave":
        people.removePerson(frame.user);
        break;
      case "typing":
        if (frame.user !== me) people.setTyping(frame.user, frame.typing);
        break;
      case "receipt":
        timeline.setReadMarker(frame.user, frame.seq);
        break;
      case "level": // this room's notification level, set in another tab
        onLevel(frame);
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
          timeline.renderReceipts();
        }
        composer.onUpdate(frame.message);
        timeline.maybeSendRead();
        break;
      case "error":
        composer.showError(frame);
        break;
      default:
        break;
    }
  }

  return { send, connect, isEnded: () => ended };
}
