// node --test tests/js/: the room page's protocol state (static/protocol.js): where the page
// stands, what each frame means, resending after a reconnect, and the reconnect backoff.
import assert from "node:assert/strict";
import { test } from "node:test";

import { BACKOFF_CAP_MS, BACKOFF_MS, RoomProtocol, reconnectDelay } from "../../static/protocol.js";

const msg = (seq, extra = {}) => ({ room: "general", seq, user: "ann", text: `m${seq}`, ts: 0, ...extra });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => msg(from + i));

function page(lastSeq = 0) {
  return new RoomProtocol({ room: "general", lastSeq, rate: 10, burst: 20, now: 0 });
}

// What chat.js does with a history frame, without the drawing.
function takeHistory(proto, frame) {
  const plan = proto.history(frame);
  const shown = [];
  for (const m of plan.messages) {
    proto.accept(m);
    if (!proto.isShown(m)) {
      proto.shown(m);
      shown.push(m.seq);
    }
  }
  proto.joinedAt(plan);
  return { plan, shown };
}

test("the join resumes from what the page was rendered with, and again from what it shows", () => {
  const proto = page(41);
  assert.deepEqual(proto.join(), { type: "join", room: "general", since: 41 });
  takeHistory(proto, { messages: range(42, 44), complete: true, last_seq: 44 });
  proto.shown(msg(45));
  proto.lost();
  assert.deepEqual(proto.join(), { type: "join", room: "general", since: 45 });
});

test("live messages wait for the history, then a gap asks again and a copy is not new", () => {
  const proto = page(10);
  proto.join();
  assert.equal(proto.chat(msg(11)), "wait"); // the history covers it
  takeHistory(proto, { messages: range(11, 12), complete: true, last_seq: 12 });
  assert.equal(proto.joined, true);
  assert.equal(proto.chat(msg(13)), "new");
  proto.shown(msg(13));
  assert.equal(proto.chat(msg(13, { client_id: "c" })), "seen"); // a resend's ack
  assert.equal(proto.chat(msg(15)), "gap");
  assert.deepEqual(proto.join(), { type: "join", room: "general", since: 13 });
  assert.equal(proto.chat(msg(14)), "wait"); // until the new history
});

test("a history whose newest messages were deleted still moves the page to the room's last seq", () => {
  const proto = page(5);
  proto.join();
  takeHistory(proto, { messages: range(6, 7), complete: true, last_seq: 9 });
  assert.equal(proto.lastSeq, 9);
  assert.equal(proto.chat(msg(10)), "new"); // no gap: 8 and 9 are gone, not missed
});

test("an incomplete history accepts its gap and says how many are no longer kept", () => {
  const proto = page(3);
  proto.join();
  const { plan, shown } = takeHistory(proto, { messages: range(60, 62), complete: false, last_seq: 62 });
  assert.equal(plan.missed, 56);
  assert.deepEqual(shown, [60, 61, 62]);
  assert.equal(proto.lastSeq, 62);
});

test("a reset starts the page afresh from the room's history", () => {
  const proto = page(120);
  proto.join();
  const { plan, shown } = takeHistory(proto, {
    messages: range(1, 3), complete: true, last_seq: 3, reset: true,
  });
  assert.equal(plan.reset, true);
  assert.deepEqual(shown, [1, 2, 3]);
  assert.equal(proto.lastSeq, 3);
  assert.equal(proto.chat(msg(4)), "new");
});

test("unconfirmed messages go out only when joined, and all again after a reconnect, in order", () => {
  const proto = page(0);
  proto.outbox.add("a", "first");
  assert.deepEqual(proto.take(0), []); // not joined yet: it stays pending
  proto.join();
  takeHistory(proto, { messages: [], complete: true, last_seq: 0 });
  proto.outbox.add("b", "second");
  const sent = proto.take(0);
  assert.deepEqual(sent, [
    { type: "chat", room: "general", text: "first", client_id: "a" },
    { type: "chat", room: "general", text: "second", client_id: "b" },
  ]);
  proto.outbox.acked("a"); // its chat frame came back with client_id "a"
  proto.lost(); // "b" was sent, never acked
  assert.deepEqual(proto.take(1000), []);
  proto.join();
  takeHistory(proto, { messages: [], complete: true, last_seq: 1 });
  assert.deepEqual(proto.take(1000).map((f) => f.client_id), ["b"]); // the same client_id
});

test("a read marker is sent for what the page shows, once", () => {
  const proto = page(0);
  assert.equal(proto.read(0), null); // not joined
  proto.join();
  takeHistory(proto, { messages: range(1, 4), complete: true, last_seq: 4 });
  assert.deepEqual(proto.read(0), { type: "read", room: "general", seq: 4 });
  assert.equal(proto.read(4), null);
});

test("reconnects back off 0.5, 1, 2, 4, 8 s then every 10 s, with jitter, reset by an open", () => {
  const proto = page(0);
  const low = () => 0;
  const high = () => 0.999999;
  const bases = [...BACKOFF_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS];
  for (const base of bases) {
    const delay = proto.nextDelay(low);
    assert.equal(delay, base / 2);
  }
  assert.equal(proto.refusedRepeatedly(), true);
  proto.opened();
  assert.equal(proto.refusedRepeatedly(), false);
  assert.equal(proto.nextDelay(high) < BACKOFF_MS[0] && proto.attempt === 1, true);
  proto.resetBackoff();
  assert.equal(proto.attempt, 0);
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const base = attempt < BACKOFF_MS.length ? BACKOFF_MS[attempt] : BACKOFF_CAP_MS;
    const delay = reconnectDelay(attempt);
    assert.ok(delay >= base / 2 && delay <= base, `${delay} for attempt ${attempt}`);
  }
});
