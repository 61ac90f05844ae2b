// The room page's live client: the entry that reads the server-rendered page and wires the
// parts together. No framework, no build step. User text is only ever inserted with
// textContent (or into data attributes), never as HTML.
//
// The protocol state (the last seq shown, joined or not, what a frame means, the unconfirmed
// messages by client_id and their resending, the reconnect backoff) is protocol.js's, which
// touches no DOM; the parts below draw what it decides:
//   room-socket.js  the socket's lifecycle and what each frame received does (docs/protocol.md)
//   composer.js     sending, editing, replying, deleting, reacting, typing notices
//   attach.js       files attached: uploaded (with progress) before the message goes
//   timeline.js     scrolling, notices, the unread line, read markers and "seen by N"
//   render.js, people.js, older.js  a message's element, the people panel, older pages
// They call one another only through the callbacks passed here.
import { createCompletion } from "./complete.js";
import { createAttacher } from "./attach.js";
import { createComposer } from "./composer.js";
import { createOlderLoader } from "./older.js";
import { createPeople } from "./people.js";
import { RoomProtocol } from "./protocol.js";
import { createRenderer } from "./render.js";
import { createRoomSocket } from "./room-socket.js";
import { createTimeline } from "./timeline.js";
import { createNotifier, createTitleCount } from "./notify.js";

(function () {
  const root = document.getElementById("room");
  if (!root) return;

  const byId = (id) => document.getElementById(id);
  const room = root.dataset.room;
  const me = root.dataset.me;
  const isAdmin = root.dataset.admin === "true";
  const list = byId("messages");
  const input = byId("text");
  const form = byId("composer");
  const typingEl = byId("typing");
  const peopleEl = byId("people");
  const peopleCount = byId("people-count");
  const peopleStale = byId("people-stale");
  // Limits the server enforces (settings), so that the page stays within them by design.
  const limit = (name, fallback) => Number(root.dataset[name]) || fallback;
  const proto = new RoomProtocol({
    room,
    lastSeq: Number(root.dataset.lastSeq) || 0,
    rate: limit("chatRate", 10),
    burst: limit("chatBurst", 20),
    now: Date.now(),
  });
  const pending = new Map(); // client_id -> {text, el}: what the page shows as "sending…"

  // The parts reach one another late (each needs another's), through these.
  let socket = null;
  let composer = null;
  const send = (frame) => socket.send(frame);
  const isEnded = () => socket !== null && socket.isEnded();
  const pump = () => composer.pump();

  const titleCount = createTitleCount();
  const notifier = createNotifier({
    room, me, titleCount, jump: (seq) => composer.act("jump", seq),
    elements: {
      levelForm: byId("notify-level"), levelSelect: byId("notify-level-select"),
      levelSave: byId("notify-level-save"), levelStatus: byId("notify-level-status"),
      enableButton: byId("enable-notifications"),
    },
  });
  const renderer = createRenderer({
    list, me, isAdmin, room, act: (...args) => composer.act(...args),
    // Mentions of the reader by others (what I write myself names me for someone else).
    decorate: (li, m) => { if (m.user !== me) notifier.highlight(li); },
  });
  const people = createPeople({
    peopleEl, peopleCount, peopleBox: byId("people-box"), peopleStale, typingEl, me, isEnded,
  });
  const loadOlder = createOlderLoader({
    list, room, oldestSeq: Number(root.dataset.oldestSeq) || 0,
    messageElement: renderer.messageElement, regroup: renderer.regroup,
  });
  const timeline = createTimeline({
    list, jump: byId("jump"), input, me, proto, pending, loadOlder, renderer, send, pump, titleCount,
    readSeqAtLoad: Number(root.dataset.readSeq) || 0,
  });
  const csrfField = document.querySelector('input[name="csrf_token"]');
  const attacher = createAttacher({
    room,
    csrfToken: csrfField ? csrfField.value : "",
    maxBytes: limit("maxUpload", 10 * 1024 * 1024),
    maxFiles: limit("maxFiles", 10),
    elements: {
      button: byId("attach"), fileInput: byId("attach-input"), tray: byId("attach-tray"),
      dropZone: root, input, formError: byId("composer-error"),
    },
  });
  composer = createComposer({
    room, me, proto, pending, list, loadOlder, renderer, timeline, send, isEnded, attacher,
    maxText: Number(root.dataset.maxText) || 4000,
    typingRate: limit("typingRate", 1),
    typingBurst: limit("typingBurst", 5),
    elements: {
      form, input, counter: byId("composer-count"), formError: byId("composer-error"),
      composing: byId("composing"), composingText: byId("composing-text"),
      composingCancel: byId("composing-cancel"),
    },
  });
  createCompletion({
    room, me, mayHere: root.dataset.mayHere === "true", input, form,
    listEl: byId("completions"),
    // The people on the page first (in the room now, then who wrote what is shown).
    localNames: () => [
      ...[...peopleEl.querySelectorAll("li[data-user]")].map((li) => li.dataset.user),
      ...[...list.querySelectorAll(":scope > .msg[data-user]")].reverse().map((li) => li.dataset.user),
    ],
  });
  socket = createRoomSocket({
    root, room, me, proto, timeline, people, renderer, composer,
    onNotify: (frame) => notifier.onNotify(frame),
    onLevel: (frame) => notifier.onLevel(frame),
    elements: {
      statusEl: byId("status"), retry: byId("retry"), form, input, typingEl, peopleEl,
      peopleCount, peopleStale, endedBox: byId("ended"),
    },
  });

  const loadOlderButton = byId("load-older");
  if (loadOlderButton) loadOlderButton.addEventListener("click", loadOlder);

  // --- start ---

  for (const li of list.querySelectorAll(":scope > .msg[data-state]")) renderer.hydrate(li);
  for (const t of list.querySelectorAll("time[data-ts]")) renderer.localiseTime(t);
  for (const li of list.querySelectorAll(":scope > .msg")) renderer.addMenu(li);
  renderer.regroup();
  timeline.start();
  composer.showCount();
  notifier.openTarget();
  // A room opened is a room to write in.
  input.focus({ preventScroll: true });
  socket.connect();
})();
