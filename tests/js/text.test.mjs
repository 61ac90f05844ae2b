// node --test: the room page's words and times (static/text.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { endedMessage, formatTime } from "../../static/text.js";

test("times follow the locale, without a leading zero on the hour", () => {
  const ms = Date.UTC(2026, 0, 5, 17, 3);
  const en = new Intl.DateTimeFormat("en-US", { hour: "numeric", minute: "2-digit", timeZone: "UTC" });
  const de = new Intl.DateTimeFormat("de-DE", { hour: "numeric", minute: "2-digit", timeZone: "UTC" });
  assert.equal(formatTime(ms, en).replace(/\s/g, " "), "5:03 PM");
  assert.equal(formatTime(ms, de), "17:03");
  assert.equal(formatTime(Date.UTC(2026, 0, 5, 5, 3), en).replace(/\s/g, " "), "5:03 AM");
});

test("an ended session says what happened", () => {
  assert.equal(endedMessage("kicked by an admin"), "An administrator removed you from the chat.");
  assert.equal(
    endedMessage("banned by an admin: spam"),
    "An administrator banned your account. Reason: spam",
  );
  assert.equal(endedMessage("logged out everywhere"), "You were logged out everywhere.");
  assert.equal(endedMessage("logged out"), "You logged out in another tab.");
  assert.equal(endedMessage("password changed: log in again"), "Your password was changed.");
  assert.equal(endedMessage(""), "Your session ended.");
});

test("lists write today's times alone and other days with their date", async () => {
  const { formatWhen } = await import("../../static/text.js");
  const opts = { hour: "numeric", minute: "2-digit", timeZone: "UTC" };
  const time = new Intl.DateTimeFormat("en-US", opts);
  const day = new Intl.DateTimeFormat("en-US", { ...opts, month: "short", day: "numeric" });
  const now = Date.UTC(2026, 10, 29, 18, 0);
  const norm = (s) => s.replace(/\s/g, " ");
  assert.equal(norm(formatWhen(Date.UTC(2026, 10, 29, 17, 3), now, [time, day])), "5:03 PM");
  assert.equal(
    norm(formatWhen(Date.UTC(2026, 10, 27, 9, 5), now, [time, day])),
    "Nov 27, 9:05 AM",
  );
});
