// The room page's composer: sending (a "sending…" copy at the bottom, the outbox letting
// messages go in order within the server's limit, refusals shown beside the message or under
// the form), the character count, editing, replying, deleting and reacting from a message's
// menu, and the typing notices. User text reaches the DOM only through textContent.
import { lastEditable, toggleReaction } from "./events.js";
import { TypingNotifier } from "./typing.js";

const TYPING_REF = "typing"; // the ref of typing notices: their refusals are never shown
const CHANGE_REF = "change"; // edits, deletions, reactions: a refusal shows under the form

// ctx: {room, me, maxText, typingRate, typingBurst, proto, pending, list, loadOlder,
// elements: {form, input, counter, formError, composing, composingText, composingCancel},
// renderer: {messageElement, regroup, stateOf}, timeline: {removeEmptyNotice, toBottom},
// send, isEnded, attacher} (send and isEnded are the socket's, as callbacks; attacher is
// attach.js's: the files uploaded for the next message).
export function createComposer(ctx) {
  const { room, me, maxText, proto, pending, list, loadOlder, elements, renderer } = ctx;
  const { timeline, send, isEnded, attacher } = ctx;
  const { form, input, counter, formError, composing, composingText } = elements;
  const { messageElement, regroup, stateOf } = renderer;
  const outbox = proto.outbox; // the unconfirmed messages, by client_id
  const typingNotifier = new TypingNotifier({
    rate: ctx.typingRate, burst: ctx.typingBurst, now: Date.now(),
  });
  let editing = null; // the seq being edited, or null
  let replyTo = null; // the seq being answered, or null
  let pumpTimer = null;
  let typingTimer = null;

  // --- refusals ---

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

  // The socket is gone: nothing goes out until the re-join, and nobody reads "typing…".
  function onLost() {
    typingNotifier.reset();
    clearTimeout(pumpTimer);
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
    // Files uploaded for this message (attach.js); the text is then an optional caption.
    const files = attacher && editing === null ? attacher.ready() : [];
    if ((!text.trim() && files.length === 0) || isEnded()) return;
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
    if (attacher && attacher.busy()) {
      formError.textContent = "Wait for the files to finish uploading (or cancel them).";
      return;
    }
    const clientId = newClientId();
    const extra = replyTo !== null ? { reply_to: replyTo } : {};
    if (files.length > 0) extra.files = files.map((f) => f.id);
    const el = messageElement({ user: me, text, ts: Date.now(), ...extra, files, reply: undefined });
    el.classList.add("pending");
    el.dataset.clientId = clientId;
    timeline.removeEmptyNotice();
    list.append(el);
    regroup();
    timeline.toBottom();
    pending.set(clientId, { text, el });
    input.value = "";
    showCount();
    typingNotifier.sent(); // the message itself ends "typing…" on every reader's page
    // Not joined (reconnecting, offline): it stays pending and goes out after the re-join.
    outbox.add(clientId, text, extra);
    if (files.length > 0) attacher.clear();
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

  // A message changed: the one being edited was deleted, so there is nothing left to edit.
  function onUpdate(message) {
    if (editing === message.seq && message.deleted) stopComposing();
  }

  elements.composingCancel.addEventListener("click", () => {
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

  // --- typing ---

  function sendTyping(on) {
    if (on !== null && proto.joined) send({ type: "typing", room, typing: on, ref: TYPING_REF });
  }

  function typingChanged() {
    clearTimeout(typingTimer);
    if (!proto.joined || isEnded()) return;
    sendTyping(typingNotifier.input(input.value !== "", Date.now()));
    const wait = typingNotifier.retryIn(Date.now());
    if (wait !== null) typingTimer = setTimeout(typingChanged, wait);
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

  input.addEventListener("blur", () => sendTyping(typingNotifier.stop(Date.now())));

  return { pump, showCount, showError, onLost, onUpdate, act };
}
