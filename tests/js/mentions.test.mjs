// node --test tests/js/: the composer's @name completion and the reader's mentions
// (static/mentions.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  completionAt, insertCompletion, mentionRanges, notificationTag, notificationText, rankNames,
  targetSeq, titleWithCount,
} from "../../static/mentions.js";

test("an @ that starts a word opens a completion; an address or code does not", () => {
  assert.deepEqual(completionAt("hi @bo", 6), { start: 3, query: "bo" });
  assert.deepEqual(completionAt("@", 1), { start: 0, query: "" });
  assert.deepEqual(completionAt("hi @bo there", 6), { start: 3, query: "bo" });
  assert.deepEqual(completionAt("(@al", 4), { start: 1, query: "al" });
  assert.equal(completionAt("mail@exa", 8), null);
  assert.equal(completionAt("hi bob", 6), null);
  assert.equal(completionAt("hi @bob there", 13), null); // the caret left the name
  assert.equal(completionAt("see `@bo", 8), null);
  assert.deepEqual(completionAt("see `x` @bo", 11), { start: 8, query: "bo" });
  assert.equal(completionAt("@@bo", 4), null);
});

test("names that start with what was typed come first, the reader never, each name once", () => {
  const names = ["carol", "Bobby", "alice", "bob", "rob", "BOB", "me"];
  assert.deepEqual(rankNames("bo", names, { me: "me" }), ["Bobby", "bob"]);
  assert.deepEqual(rankNames("ob", names), ["Bobby", "bob", "rob"]);
  assert.deepEqual(rankNames("", names, { me: "ME", limit: 3 }), ["carol", "Bobby", "alice"]);
  assert.deepEqual(rankNames("zz", names), []);
});

test("accepting a name replaces what was typed of it and leaves the caret after one space", () => {
  assert.deepEqual(insertCompletion("hi @bo", 3, 6, "bob"), { text: "hi @bob ", caret: 8 });
  assert.deepEqual(insertCompletion("hi @bo there", 3, 6, "bob"), { text: "hi @bob there", caret: 8 });
  assert.deepEqual(insertCompletion("@b, hi", 0, 2, "Bobby"), { text: "@Bobby , hi", caret: 7 });
  assert.deepEqual(insertCompletion("hi @bxyz!", 3, 5, "bob"), { text: "hi @bob !", caret: 8 });
});

test("a message mentions the reader where @name stands as a word, in any case", () => {
  const text = "@Bob: ask bob@example.com, @bobby and @bob. also @here";
  assert.deepEqual(mentionRanges(text, "bob"), [[0, 4], [38, 42], [49, 54]]);
  assert.deepEqual(mentionRanges(text, "bob", { here: false }), [[0, 4], [38, 42]]);
  assert.deepEqual(mentionRanges("nobody here", "bob"), []);
  assert.deepEqual(mentionRanges("@bob.smith hi", "bob.smith"), [[0, 10]]);
});

test("the title counts what was missed; the tag names one message", () => {
  assert.equal(titleWithCount("#general · chat", 3), "(3) #general · chat");
  assert.equal(titleWithCount("(3) #general · chat", 4), "(4) #general · chat");
  assert.equal(titleWithCount("(4) #general · chat", 0), "#general · chat");
  assert.equal(notificationTag("general", 42), "chat:general:42");
});

test("a notification says who, where and (unless turned off) what", () => {
  const frame = { title: "#general", author: "ann", excerpt: "hi @bob", reason: "mention" };
  assert.deepEqual(notificationText(frame), { title: "ann in #general", body: "hi @bob" });
  assert.deepEqual(notificationText({ ...frame, excerpt: "" }).body, "New message in #general");
  assert.equal(notificationText({ ...frame, title: "ann", reason: "direct" }).title, "ann");
});

test("a link to a message names its seq", () => {
  assert.equal(targetSeq("#m42"), 42);
  assert.equal(targetSeq("#x"), null);
  assert.equal(targetSeq(""), null);
});
