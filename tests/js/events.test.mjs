// node --test tests/js/: room events on the page (static/events.js), the `update` frame's place
// in the page's seq order (static/protocol.js) and a resume's changes (static/resume.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  lastEditable, quoteText, quoteView, reactionView, toggleReaction,
} from "../../static/events.js";
import { RoomProtocol } from "../../static/protocol.js";
import { planHistory } from "../../static/resume.js";

const msg = (seq, extra = {}) => ({ room: "r", seq, user: "ann", text: `m${seq}`, ts: 0, ...extra });

test("reactions show counts, whether one is mine, and who reacted", () => {
  const view = reactionView([{ emoji: "👍", users: ["ann", "bob"] }, { emoji: "🎉", users: ["cy"] }], "bob");
  assert.deepEqual(view, [
    { emoji: "👍", count: 2, mine: true, names: "ann, bob" },
    { emoji: "🎉", count: 1, mine: false, names: "cy" },
  ]);
  assert.deepEqual(reactionView(undefined, "bob"), []);
});

test("clicking a reaction toggles my own", () => {
  const m = msg(4, { reactions: [{ emoji: "👍", users: ["bob"] }] });
  assert.deepEqual(toggleReaction("r", m, "👍", "bob"), { type: "react", room: "r", seq: 4, emoji: "👍", on: false });
  assert.equal(toggleReaction("r", m, "👍", "ann").on, true);
  assert.equal(toggleReaction("r", m, "🎉", "bob").on, true);
});

test("a reply's quote follows its original: kept, edited, deleted, no longer kept", () => {
  const reply = msg(9, { reply_to: 3, reply: { user: "bob", text: "first line\nsecond", deleted: false } });
  const none = () => undefined;
  assert.deepEqual(quoteView(reply, none), { seq: 3, state: "kept", user: "bob", text: "first line" });
  assert.equal(quoteText(quoteView(reply, none)), "bob: first line");
  const edited = quoteView(reply, () => ({ user: "bob", text: "fixed" }));
  assert.equal(edited.text, "fixed");
  const deleted = quoteView(reply, () => ({ user: "bob", text: "", deleted: true }));
  assert.equal(quoteText(deleted), "Reply to bob: message deleted");
  // A message of files alone, with no caption, is quoted as what it is.
  assert.equal(quoteText({ state: "kept", user: "bob", text: "" }), "bob: (a file)");
  const gone = quoteView(msg(9, { reply_to: 3, reply: null }), none);
  assert.equal(quoteText(gone), "Reply to a message no longer kept");
  assert.equal(quoteView(msg(9), none), null);
});

test("Up arrow edits my newest message that is stored and not deleted", () => {
  const shown = [msg(1, { user: "me" }), msg(2), msg(3, { user: "me", deleted: true }), msg(4)];
  assert.equal(lastEditable(shown, "me"), 1);
  assert.equal(lastEditable([msg(2)], "me"), null);
});

test("an update takes its place in the page's seq order, gaps included", () => {
  const proto = new RoomProtocol({ room: "r", lastSeq: 5, rate: 10, burst: 10, now: 0 });
  assert.equal(proto.update({ seq: 6 }), "wait");
  proto.joinedAt({ lastSeq: 5 });
  assert.equal(proto.update({ seq: 5 }), "seen");
  assert.equal(proto.update({ seq: 8 }), "gap");
  assert.equal(proto.update({ seq: 6 }), "apply");
  proto.shown({ seq: 6 });
  assert.equal(proto.lastSeq, 6);
  assert.equal(proto.chat(msg(7)), "new");
});

test("a reply goes out with its reply_to", () => {
  const proto = new RoomProtocol({ room: "r", lastSeq: 0, rate: 10, burst: 10, now: 0 });
  proto.outbox.add("c1", "yes", { reply_to: 4 });
  proto.joinedAt({ lastSeq: 0 });
  assert.deepEqual(proto.take(0), [{ type: "chat", room: "r", text: "yes", client_id: "c1", reply_to: 4 }]);
});

test("a resume applies what changed while away and adds no deleted message", () => {
  const frame = {
    messages: [msg(2, { text: "edited", edited_at: 5 }), msg(3, { deleted: true, text: "" }), msg(7), msg(8, { deleted: true })],
    complete: true,
    last_seq: 9,
  };
  const plan = planHistory(6, frame);
  assert.deepEqual(plan.messages.map((m) => m.seq), [7]);
  assert.deepEqual(plan.changes.map((m) => m.seq), [2, 3, 8]);
  assert.equal(plan.lastSeq, 9);
  assert.equal(plan.missed, 0);
  const reset = planHistory(20, { ...frame, reset: true });
  assert.deepEqual(reset.messages.map((m) => m.seq), [2, 7]);
});
