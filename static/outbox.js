// The page's unconfirmed messages, sent in the order they were written and stored in that
// order. No DOM here: chat.js asks `take` what to send, and `wakeIn` when to ask again.
//
// The server limits messages per user (CHAT_RATE_PER_SECOND, CHAT_BURST) and refuses the
// excess with `rate_limited` and a `retry_after`. Refused messages retried each on its own
// timer land shuffled, so:
//  - the outbox keeps its own bucket like the server's and does not send what would be refused;
//  - near the limit it keeps one message in flight, so a refusal can only hit that one;
//  - after a refusal (`rate_limited`, `unavailable`), the refused message and every later one
//    wait, and go out again in order after `retry_after`.
// Resending is safe: a message keeps its client_id, and the server stores a client_id once.
import { Bucket } from "./bucket.js";

export class Outbox {
  // rate, burst: the server's chat limit. One token stays in reserve for network jitter.
  constructor({ rate, burst, now }) {
    this.bucket = new Bucket(rate, Math.max(1, burst - 1), now);
    this.queue = []; // [{id, text, sent}] in the order written; the sent ones are a prefix
    this.heldUntil = 0;
    this.open = false; // joined: frames may go out
  }

  get size() {
    return this.queue.length;
  }

  has(id) {
    return this.queue.some((e) => e.id === id);
  }

  // extra: more fields of the chat frame (a reply's `reply_to`).
  add(id, text, extra = {}) {
    this.queue.push({ id, text, extra, sent: false });
  }

  inFlight() {
    let n = 0;
    while (n < this.queue.length && this.queue[n].sent) n += 1;
    return n;
  }

  // The messages to send now, in order: [{id, text}].
  take(now) {
    const out = [];
    if (!this.open || now < this.heldUntil) return out;
    for (let i = this.inFlight(); i < this.queue.length; i += 1) {
      if (i > 0 && this.bucket.tokens(now) < 2) break; // near the limit: one at a time
      if (!this.bucket.take(now)) break;
      const entry = this.queue[i];
      entry.sent = true;
      out.push({ id: entry.id, text: entry.text, extra: entry.extra || {} });
    }
    return out;
  }

  // Milliseconds until `take` may have something to send, or null when nothing waits.
  wakeIn(now) {
    const n = this.inFlight();
    if (!this.open || n === this.queue.length) return null;
    if (now < this.heldUntil) return this.heldUntil - now;
    // One in flight near the limit: its answer, or enough tokens to pipeline, comes first.
    return this.bucket.wait(now, n > 0 ? 2 : 1);
  }

  // The server stored it (its chat frame came back with our client_id).
  acked(id) {
    const i = this.queue.findIndex((e) => e.id === id);
    if (i >= 0) this.queue.splice(i, 1);
    return i >= 0;
  }

  // Refused for now: it and everything after it wait `retryAfterMs`, then go out in order.
  refused(id, retryAfterMs, now) {
    const i = this.queue.findIndex((e) => e.id === id);
    if (i < 0) return false;
    for (let j = i; j < this.queue.length; j += 1) this.queue[j].sent = false;
    this.heldUntil = Math.max(this.heldUntil, now + retryAfterMs);
    this.bucket.drain(now);
    return true;
  }

  // Refused for good (too long, not allowed): it leaves the queue; the others carry on.
  failed(id) {
    return this.acked(id);
  }

  // Joined (again): everything unconfirmed goes out, in order.
  opened() {
    this.open = true;
  }

  // The socket is gone: nothing is in flight any more.
  closed() {
    this.open = false;
    for (const entry of this.queue) entry.sent = false;
  }
}
