// The room page's side of the protocol (docs/protocol.md), with no DOM: where the page stands
// in its room (the last seq it shows, whether it is joined), what a live `chat` frame means
// (wait for the history, a gap to re-join over, a copy already shown, or new), how a `history`
// frame is taken (resume.js), the messages not yet stored, by client_id, resent in order after
// every (re)join (outbox.js), and when to reconnect (capped backoff with jitter).
// chat.js draws what this decides; tests/js/protocol.test.mjs checks it with node --test.
import { Outbox } from "./outbox.js";
import { planHistory } from "./resume.js";

// Reconnect delays: 0.5, 1, 2, 4, 8 s, then every 10 s; each one between half and all of it.
export const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
export const BACKOFF_CAP_MS = 10000;

export function reconnectDelay(attempt, random = Math.random) {
  const base = attempt < BACKOFF_MS.length ? BACKOFF_MS[attempt] : BACKOFF_CAP_MS;
  return base / 2 + (random() * base) / 2; // jitter: not everyone at once
}

export class RoomProtocol {
  // room: the room's name; lastSeq: the last seq the page was rendered with (0: none);
  // rate, burst: the server's chat limit (the outbox keeps to it); now: a clock reading (ms).
  constructor({ room, lastSeq = 0, rate, burst, now }) {
    this.room = room;
    this.lastSeq = lastSeq;
    this.joined = false;
    this.attempt = 0; // reconnects since the last socket that opened
    this.outbox = new Outbox({ rate, burst, now });
  }

  // --- the socket ---

  // A socket opened: the next failure starts the backoff afresh.
  opened() {
    this.attempt = 0;
  }

  // The `join` to send on every (re)join: from what the page shows, so nothing falls between.
  join() {
    this.joined = false;
    return { type: "join", room: this.room, since: this.lastSeq };
  }

  // The socket is gone: not joined, nothing in flight (it all goes out again after the join).
  lost() {
    this.joined = false;
    this.outbox.closed();
  }

  // How long to wait before the next reconnect.
  nextDelay(random = Math.random) {
    const delay = reconnectDelay(this.attempt, random);
    this.attempt += 1;
    return delay;
  }

  // The user asked, or the network came back: reconnect without the wait.
  resetBackoff() {
    this.attempt = 0;
  }

  // Refused at least twice in a row before opening: worth asking whether still logged in.
  refusedRepeatedly() {
    return this.attempt >= 2;
  }

  // --- frames from the server ---

  // A live chat message: "wait" (not joined yet: the history covers it, the server holds the
  // rest), "gap" (a seq was skipped: re-join from what the page has), "seen" (already shown:
  // a resend's ack or a history overlap; its pending copy goes), or "new".
  chat(frame) {
    if (!this.joined) return "wait";
    if (frame.seq > this.lastSeq + 1) return "gap";
    return this.isShown(frame) ? "seen" : "new";
  }

  // A live `update` (an edit, a deletion, a reaction: an event with its own seq): "wait",
  // "gap" and "seen" as for `chat`, else "apply" (then `shown(frame)`: the page stands at it).
  update(frame) {
    if (!this.joined) return "wait";
    if (frame.seq > this.lastSeq + 1) return "gap";
    return frame.seq <= this.lastSeq ? "seen" : "apply";
  }

  isShown(message) {
    return message.seq <= this.lastSeq;
  }

  // A message is now shown: the page stands at its seq.
  shown(message) {
    this.lastSeq = message.seq;
  }

  // What a `history` frame asks of the page (see resume.js). The page then shows
  // `plan.messages` with `accept` and `shown`, and calls `joinedAt(plan)`.
  history(frame) {
    const plan = planHistory(this.lastSeq, frame);
    if (plan.reset) this.lastSeq = 0; // the page drops what it showed
    return plan;
  }

  // A message of the history: its gap, if any, is the history's to say (the `missed` notice).
  accept(message) {
    if (message.seq > this.lastSeq + 1) this.lastSeq = message.seq - 1;
  }

  // The history is shown: joined, at the room's last seq (its newest messages may have been
  // deleted), and everything unconfirmed may go out again, in order.
  joinedAt(plan) {
    if (plan.lastSeq > this.lastSeq) this.lastSeq = plan.lastSeq;
    this.joined = true;
    this.outbox.opened();
  }

  // --- sending ---

  // The chat frames to send now, in order (none until joined).
  take(now) {
    if (!this.joined) return [];
    return this.outbox.take(now).map((m) => ({
      type: "chat", room: this.room, text: m.text, client_id: m.id, ...m.extra,
    }));
  }

  // The `read` frame for what the page shows, or null when `readSent` already covers it.
  read(readSent) {
    if (!this.joined || this.lastSeq <= readSent) return null;
    return { type: "read", room: this.room, seq: this.lastSeq };
  }
}
