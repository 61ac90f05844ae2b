// node --test tests/js/: the room page's handling of `history` frames (static/resume.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { planHistory } from "../../static/resume.js";

const msg = (seq) => ({ room: "general", seq, user: "ann", text: `m${seq}`, ts: 0 });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => msg(from + i));

test("a complete resume adds what was missed and says nothing", () => {
  const plan = planHistory(41, { messages: range(42, 44), complete: true, last_seq: 44 });
  assert.equal(plan.reset, false);
  assert.equal(plan.missed, 0);
  assert.deepEqual(plan.messages.map((m) => m.seq), [42, 43, 44]);
  assert.equal(plan.lastSeq, 44);
});

test("an incomplete resume says how many messages are no longer kept", () => {
  const plan = planHistory(10, { messages: range(56, 105), complete: false, last_seq: 105 });
  assert.equal(plan.missed, 45);
  assert.equal(plan.messages[0].seq, 56);
  assert.equal(plan.lastSeq, 105);
});

test("an incomplete history a page mostly has adds the rest and nothing twice", () => {
  // A node that could not fill a gap tells every socket in the room; this one had up to 60.
  const plan = planHistory(60, { messages: range(56, 105), complete: false, last_seq: 105 });
  assert.equal(plan.missed, 0);
  assert.deepEqual(plan.messages.map((m) => m.seq), range(61, 105).map((m) => m.seq));
});

test("nothing kept after lastSeq: the gap is counted from the room's last seq", () => {
  const plan = planHistory(10, { messages: [], complete: false, last_seq: 70 });
  assert.equal(plan.missed, 60);
  assert.equal(plan.lastSeq, 70);
});

test("deleted newest messages move lastSeq to the room's last seq: the next one is no gap", () => {
  const plan = planHistory(5, { messages: [msg(6)], complete: true, last_seq: 8 });
  assert.equal(plan.lastSeq, 8);
});

test("a reset replaces what the page shows, even with seqs below what it had", () => {
  const plan = planHistory(120, {
    messages: range(1, 30),
    complete: true,
    last_seq: 30,
    reset: true,
  });
  assert.equal(plan.reset, true);
  assert.equal(plan.earlier, false);
  assert.equal(plan.missed, 0);
  assert.equal(plan.messages.length, 30);
  assert.equal(plan.lastSeq, 30);
});

test("a reset of a trimmed room says earlier messages are not kept, as a fresh page does", () => {
  const plan = planHistory(500, {
    messages: range(51, 100),
    complete: false,
    last_seq: 100,
    reset: true,
  });
  assert.equal(plan.earlier, true);
  assert.equal(plan.lastSeq, 100);
});

test("a reset to an empty room", () => {
  const plan = planHistory(9, { messages: [], complete: true, last_seq: 0, reset: true });
  assert.equal(plan.reset, true);
  assert.equal(plan.earlier, false);
  assert.equal(plan.lastSeq, 0);
});
