// node --test: when the room page tells others it is typing (static/typing.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TypingNotifier } from "../../static/typing.js";

const limit = { rate: 1, burst: 5 }; // the server's defaults: 1/s, burst 5

// Replays a person's keystrokes; returns the notices sent, and checks each against a server
// bucket with the same limit.
function serverBucket() {
  let tokens = limit.burst;
  let stamp = 0;
  return (now) => {
    tokens = Math.min(limit.burst, tokens + ((now - stamp) / 1000) * limit.rate);
    stamp = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
}

test("a burst of quick replies stays within the server's limit", () => {
  const typing = new TypingNotifier({ ...limit, now: 0 });
  const allowed = serverBucket();
  let now = 0;
  let sent = 0;
  // Ten short replies, each typed in 300 ms and sent at once (faster than the four).
  for (let reply = 0; reply < 10; reply += 1) {
    for (let key = 1; key <= 6; key += 1) {
      now += 50;
      const frame = typing.input(true, now);
      if (frame !== null) {
        sent += 1;
        assert.ok(allowed(now), `notice at ${now} ms would be refused`);
      }
    }
    typing.sent(); // Enter: the message itself ends typing
    now += 10;
    assert.equal(typing.input(false, now), null, "no 'stopped typing' after a send");
  }
  assert.ok(sent >= 4, "the first replies are announced");
});

test("typing on is renewed at most every 3 seconds while typing goes on", () => {
  const typing = new TypingNotifier({ ...limit, now: 0 });
  const frames = [];
  for (let now = 0; now <= 10_000; now += 100) {
    const frame = typing.input(true, now);
    if (frame !== null) frames.push([now, frame]);
  }
  assert.deepEqual(frames, [[0, true], [3000, true], [6000, true], [9000, true]]);
});

test("clearing the composer says typing stopped, once", () => {
  const typing = new TypingNotifier({ ...limit, now: 0 });
  assert.equal(typing.input(true, 0), true);
  assert.equal(typing.input(false, 500), false);
  assert.equal(typing.stop(600), null);
  assert.equal(typing.input(true, 700), true);
});

test("without a token nothing is sent, not even 'stopped'", () => {
  const typing = new TypingNotifier({ rate: 0.1, burst: 2, now: 0 }); // one usable token
  assert.equal(typing.input(true, 0), true);
  assert.equal(typing.stop(10), null);
  assert.equal(typing.input(true, 20), null);
});

test("a first notice that found no token goes out when one is back", () => {
  const typing = new TypingNotifier({ rate: 1, burst: 2, now: 0 }); // one usable token
  assert.equal(typing.input(true, 0), true);
  typing.sent();
  assert.equal(typing.input(true, 100), null);
  assert.equal(typing.retryIn(100), 900);
  assert.equal(typing.input(true, 1000), true);
  assert.equal(typing.retryIn(1000), null);
  typing.sent();
  assert.equal(typing.input(true, 1100), null);
  typing.sent(); // sent before the wait was over: nothing is owed any more
  assert.equal(typing.retryIn(1200), null);
});

test("after a reconnect, typing is announced afresh", () => {
  const typing = new TypingNotifier({ ...limit, now: 0 });
  assert.equal(typing.input(true, 0), true);
  typing.reset();
  assert.equal(typing.input(true, 100), true);
});
