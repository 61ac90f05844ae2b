import assert from "node:assert/strict";
import { test } from "node:test";

import {
  base64UrlToBytes,
  notificationFor,
  sameSitePath,
  shownInFocusedWindow,
  subscriptionFields,
  windowFor,
} from "../../static/push-notice.js";

const payload = {
  room: "general",
  title: "#general",
  url: "/rooms/general#m-7",
  author: "bob",
  excerpt: "hi @alice",
  seq: 7,
  tag: "chat:general:7",
};

test("base64url keys become the bytes they encode, padded or not", () => {
  assert.deepEqual([...base64UrlToBytes("AQID")], [1, 2, 3]);
  assert.deepEqual([...base64UrlToBytes("-_8")], [0xfb, 0xff]);
  assert.equal(base64UrlToBytes("A".repeat(87)).length, 65);
});

test("a subscription's JSON becomes the form fields; an incomplete one is refused", () => {
  const json = { endpoint: "https://push.example/x", keys: { p256dh: "P", auth: "A" } };
  assert.deepEqual(subscriptionFields(json), {
    endpoint: "https://push.example/x",
    p256dh: "P",
    auth: "A",
  });
  assert.equal(subscriptionFields({ endpoint: "https://push.example/x", keys: {} }), null);
  assert.equal(subscriptionFields(null), null);
});

test("a payload becomes a notification tagged by room and seq", () => {
  const n = notificationFor(payload);
  assert.equal(n.title, "#general");
  assert.equal(n.options.body, "bob: hi @alice");
  assert.equal(n.options.tag, "chat:general:7");
  assert.deepEqual(n.options.data, { url: "/rooms/general#m-7", room: "general", seq: 7 });
});

test("without an excerpt the notification names the author only", () => {
  assert.equal(notificationFor({ ...payload, excerpt: "" }).options.body, "New message from bob");
  assert.equal(
    notificationFor({ ...payload, excerpt: "", author: "" }).options.body,
    "New message in #general",
  );
});

test("what is not ours shows nothing, and a foreign URL is never opened", () => {
  assert.equal(notificationFor(null), null);
  assert.equal(notificationFor({ room: "general" }), null);
  assert.equal(notificationFor({ ...payload, seq: "7" }), null);
  const evil = notificationFor({ ...payload, url: "https://evil.example/" });
  assert.equal(evil.options.data.url, "/rooms/general");
  assert.equal(sameSitePath("//evil.example/x"), "");
  assert.equal(sameSitePath("/rooms/a"), "/rooms/a");
});

test("a focused, visible window on the room makes the push redundant; others do not", () => {
  const n = notificationFor(payload);
  const on = { url: "https://chat.example/rooms/general", focused: true, visibilityState: "visible" };
  assert.equal(shownInFocusedWindow([on], n), true);
  assert.equal(shownInFocusedWindow([{ ...on, focused: false }], n), false);
  assert.equal(shownInFocusedWindow([{ ...on, visibilityState: "hidden" }], n), false);
  assert.equal(shownInFocusedWindow([{ ...on, url: "https://chat.example/rooms/other" }], n), false);
  assert.equal(shownInFocusedWindow([], n), false);
});

test("a click goes to the window showing the room, else any window, else none", () => {
  const a = { url: "https://chat.example/" };
  const b = { url: "https://chat.example/rooms/general" };
  assert.equal(windowFor([a, b], "/rooms/general#m-7"), b);
  assert.equal(windowFor([a], "/rooms/general#m-7"), a);
  assert.equal(windowFor([], "/rooms/general"), null);
});
