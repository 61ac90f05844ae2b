// The room page's live client. No framework, no build step. User text is only ever inserted
// with textContent, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("room");
  if (!root) return;

  const room = root.dataset.room;
  const me = root.dataset.me;
  const maxText = Number(root.dataset.maxText) || 4000;
  const list = document.getElementById("messages");
  const statusEl = document.getElementById("status");
  const typingEl = document.getElementById("typing");
  const peopleEl = document.getElementById("people");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const formError = document.getElementById("composer-error");

  let lastSeq = Number(root.dataset.lastSeq) || 0;
  let ws = null;
  let attempt = 0;
  let reconnectTimer = null;
  let joined = false;
  const pending = new Map(); // client_id -> {text, el}
  const typers = new Map(); // user -> expiry timer
  let typingSentAt = 0;
  let typingActive = false;
  const TYPING_INTERVAL = 3000;
  const TYPING_EXPIRY = 6000;

  // --- rendering ---

  function formatTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function localiseTimes(scope) {
    for (const t of scope.querySelectorAll("time[data-ts]")) {
      t.textContent = formatTime(Number(t.dataset.ts));
      t.title = new Date(Number(t.dataset.ts)).toLocaleString();
    }
  }

  function messageElement(m) {
    const li = document.createElement("li");
    li.className = "msg" + (m.user === me ? " mine" : "");
    if (m.seq !== undefined) li.dataset.seq = String(m.seq);
    li.dataset.user = m.user;
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.user;
    const time = document.createElement("time");
    time.dataset.ts = String(m.ts);
    time.dateTime = new Date(m.ts).toISOString();
    time.textContent = formatTime(m.ts);
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = m.text;
    li.append(author, time, text);
    return li;
  }

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function scrollIfFollowing(wasAtBottom) {
    if (wasAtBottom) list.scrollTop = list.scrollHeight;
  }

  function notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    list.append(li);
  }

  function removeEmptyNotice() {
    const empty = list.querySelector(".notice.empty");
    if (empty) empty.remove();
  }

  function addMessage(m) {
    if (m.seq <= lastSeq) return; // already shown: never twice
    if (m.seq > lastSeq + 1 && joined) {
      // A gap: something was missed. Ask again from what we have.
      rejoin();
      return;
    }
    const following = atBottom();
    removeEmptyNotice();
    const mine = m.client_id && pending.get(m.client_id);
    if (mine) {
      pending.delete(m.client_id);
      mine.el.remove();
    }
    list.append(messageElement(m));
    lastSeq = m.seq;
    scrollIfFollowing(following || Boolean(mine));
  }

  function setPeople(users) {
    peopleEl.replaceChildren();
    for (const u of users) addPerson(u);
  }

  function addPerson(user) {
    if (peopleEl.querySelector(`li[data-user="${CSS.escape(user)}"]`)) return;
    const li = document.createElement("li");
    li.dataset.user = user;
    li.textContent = user;
    peopleEl.append(li);
  }

  function removePerson(user) {
    const li = peopleEl.querySelector(`li[data-user="${CSS.escape(user)}"]`);
    if (li) li.remove();
    setTyping(user, false);
  }

  function renderTyping() {
    const names = [...typers.keys()];
    if (names.length === 0) typingEl.textContent = "";
    else if (names.length === 1) typingEl.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) typingEl.textContent = `${names[0]} and ${names[1]} are typing…`;
    else typingEl.textContent = `${names.length} people are typing…`;
  }

  function setTyping(user, on) {
    clearTimeout(typers.get(user));
    typers.delete(user);
    if (on) typers.set(user, setTimeout(() => setTyping(user, false), TYPING_EXPIRY));
    renderTyping();
  }

  function setStatus(text, state) {
    statusEl.textContent = text;
    statusEl.dataset.state = state;
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
    joined = false;
    send({ type: "join", room, since: lastSeq });
  }

  function connect() {
    clearTimeout(reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/ws`);
    setStatus("connecting…", "connecting");
    ws.addEventListener("open", () => {
      attempt = 0;
      setStatus("connected", "connected");
      rejoin();
    });
    ws.addEventListener("message", (event) => {
      // A frame may carry several JSON documents separated by newlines.
      for (const line of String(event.data).split("\n")) {
        if (line) handle(JSON.parse(line));
      }
    });
    ws.addEventListener("close", (event) => {
      joined = false;
      ws = null;
      if (event.code === 1008) {
        setStatus("disconnected: " + (event.reason || "session ended"), "offline");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const steps = [500, 1000, 2000, 4000, 8000];
    const base = attempt < steps.length ? steps[attempt] : 10000;
    attempt += 1;
    const delay = base / 2 + Math.random() * base / 2;
    let left = Math.ceil(delay / 1000);
    setStatus(`reconnecting in ${left}s`, "reconnecting");
    const tick = setInterval(() => {
      left -= 1;
      if (left > 0) setStatus(`reconnecting in ${left}s`, "reconnecting");
    }, 1000);
    reconnectTimer = setTimeout(() => {
      clearInterval(tick);
      connect();
    }, delay);
  }

  function handle(frame) {
    switch (frame.type) {
      case "history": {
        if (frame.room !== room) return;
        const following = atBottom();
        if (!frame.complete && lastSeq > 0 && frame.messages.length > 0
            && frame.messages[0].seq > lastSeq + 1) {
          notice("Some messages were missed while you were away: they are no longer kept.");
        }
        for (const m of frame.messages) {
          if (m.seq > lastSeq) {
            lastSeq = m.seq - 1; // history is authoritative: accept it in order
            addMessage(m);
          }
        }
        joined = true;
        scrollIfFollowing(following);
        resendPending();
        break;
      }
      case "chat":
        if (frame.room === room) addMessage(frame);
        break;
      case "presence":
        if (frame.room === room) setPeople(frame.users);
        break;
      case "join":
        if (frame.room === room) addPerson(frame.user);
        break;
      case "leave":
        if (frame.room === room) removePerson(frame.user);
        break;
      case "typing":
        if (frame.room === room && frame.user !== me) setTyping(frame.user, frame.typing);
        break;
      case "error":
        showError(frame);
        break;
      default:
        break;
    }
  }

  function showError(frame) {
    const entry = frame.ref && pending.get(frame.ref);
    if (entry) {
      entry.el.classList.add("failed");
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = frame.message;
      entry.el.append(why);
      if (frame.code !== "rate_limited") pending.delete(frame.ref);
      else setTimeout(() => resendOne(frame.ref), Math.ceil((frame.retry_after || 1) * 1000));
      return;
    }
    formError.textContent = frame.message;
  }

  // --- sending ---

  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  function resendOne(clientId) {
    const entry = pending.get(clientId);
    if (!entry) return;
    entry.el.classList.remove("failed");
    const why = entry.el.querySelector(".why");
    if (why) why.remove();
    send({ type: "chat", room, text: entry.text, client_id: clientId });
  }

  function resendPending() {
    for (const clientId of pending.keys()) resendOne(clientId);
  }

  function submit() {
    const text = input.value;
    formError.textContent = "";
    if (!text.trim()) return;
    if (text.length > maxText) {
      formError.textContent = `Messages are at most ${maxText} characters (this one is ${text.length}).`;
      return;
    }
    const clientId = newClientId();
    const el = messageElement({ user: me, text, ts: Date.now() });
    el.classList.add("pending");
    el.dataset.clientId = clientId;
    removeEmptyNotice();
    list.append(el);
    list.scrollTop = list.scrollHeight;
    pending.set(clientId, { text, el });
    input.value = "";
    stopTyping();
    if (joined) send({ type: "chat", room, text, client_id: clientId });
  }

  function stopTyping() {
    if (typingActive) {
      typingActive = false;
      send({ type: "typing", room, typing: false });
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });

  input.addEventListener("input", () => {
    formError.textContent = input.value.length > maxText
      ? `Messages are at most ${maxText} characters.` : "";
    const now = Date.now();
    if (!input.value) {
      stopTyping();
    } else if (!typingActive || now - typingSentAt > TYPING_INTERVAL) {
      typingActive = true;
      typingSentAt = now;
      send({ type: "typing", room, typing: true });
    }
  });

  input.addEventListener("blur", stopTyping);

  localiseTimes(list);
  list.scrollTop = list.scrollHeight;
  connect();
})();
