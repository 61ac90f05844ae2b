// node --test: the page's unconfirmed messages go out, and are stored, in the order written
// (static/outbox.js), against a simulated server with the same per-user limit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../../static/outbox.js";

// A server that stores what it accepts, refusing with retry_after past its token bucket.
// Frames take `latency` ms to arrive, plus up to `jitter`: a delay can bunch frames sent apart
// together, but a socket never reorders them.
function simulate({ rate, burst, count, latency = 20, jitter = 0, seed = 1, serverTokens }) {
  let rnd = seed;
  const random = () => {
    rnd = (rnd * 16807) % 2147483647;
    return rnd / 2147483647;
  };
  const outbox = new Outbox({ rate, burst, now: 0 });
  outbox.opened();
  let tokens = serverTokens ?? burst;
  let stamp = 0;
  const stored = [];
  const events = []; // [time, kind, payload] kept sorted by time
  const at = (time, kind, payload) => {
    events.push([time, kind, payload]);
    events.sort((a, b) => a[0] - b[0]);
  };
  let wake = null;
  let lastArrival = 0;
  const pump = (now) => {
    for (const m of outbox.take(now)) {
      lastArrival = Math.max(lastArrival, now + latency + random() * jitter);
      at(lastArrival, "arrive", m);
    }
    const wait = outbox.wakeIn(now);
    if (wait !== null && (wake === null || wake > now + wait)) {
      wake = now + wait;
      at(wake, "wake", null);
    }
  };
  for (let i = 1; i <= count; i += 1) outbox.add(`id${i}`, `line ${i}`);
  pump(0);
  let refusals = 0;
  let steps = 0;
  while (events.length > 0) {
    assert.ok((steps += 1) < 100_000, "the simulation does not end");
    const [now, kind, m] = events.shift();
    if (kind === "wake") {
      wake = null;
      pump(now);
    } else if (kind === "arrive") {
      tokens = Math.min(burst, tokens + ((now - stamp) / 1000) * rate);
      stamp = now;
      if (stored.includes(m.text)) {
        at(now + latency, "ack", m.id); // a resend: acked again, stored once
      } else if (tokens < 1) {
        refusals += 1;
        at(now + latency, "refused", { id: m.id, retry: ((1 - tokens) / rate) * 1000 });
      } else {
        tokens -= 1;
        stored.push(m.text);
        at(now + latency, "ack", m.id);
      }
    } else if (kind === "ack") {
      outbox.acked(m);
      pump(now);
    } else if (kind === "refused") {
      outbox.refused(m.id, m.retry, now);
      pump(now);
    }
  }
  return { stored, refusals, outbox };
}

const lines = (n) => Array.from({ length: n }, (_, i) => `line ${i + 1}`);

test("fifty pasted lines are stored in order, without a refusal", () => {
  const { stored, refusals, outbox } = simulate({ rate: 10, burst: 20, count: 50, jitter: 30 });
  assert.deepEqual(stored, lines(50));
  assert.equal(refusals, 0);
  assert.equal(outbox.size, 0);
});

test("when another tab used up the limit, refusals hold the rest and order is kept", () => {
  for (let seed = 1; seed <= 20; seed += 1) {
    const { stored, refusals } = simulate({
      rate: 10, burst: 20, count: 50, jitter: 30, seed, serverTokens: 0,
    });
    assert.deepEqual(stored, lines(50), `seed ${seed}`);
    assert.ok(refusals > 0);
  }
});

test("a refusal holds every later message until retry_after", () => {
  const outbox = new Outbox({ rate: 10, burst: 20, now: 0 });
  outbox.opened();
  for (const id of ["a", "b", "c"]) outbox.add(id, id);
  assert.deepEqual(outbox.take(0).map((m) => m.id), ["a", "b", "c"]);
  outbox.refused("b", 100, 10);
  assert.deepEqual(outbox.take(50), []);
  assert.equal(outbox.wakeIn(50), 60);
  outbox.acked("a");
  // After the wait, b goes first and c waits for it: the bucket is near empty.
  assert.deepEqual(outbox.take(110).map((m) => m.id), ["b"]);
  outbox.acked("b");
  assert.deepEqual(outbox.take(120), []);
  assert.equal(outbox.wakeIn(120), 90);
  assert.deepEqual(outbox.take(210).map((m) => m.id), ["c"]);
});

test("a message refused for good leaves the queue; the others carry on", () => {
  const outbox = new Outbox({ rate: 10, burst: 20, now: 0 });
  outbox.opened();
  outbox.add("a", "a");
  outbox.add("b", "b");
  outbox.take(0);
  assert.ok(outbox.failed("a"));
  assert.ok(outbox.acked("b"));
  assert.equal(outbox.size, 0);
});

test("nothing goes out until joined; a lost socket resends everything in order", () => {
  const outbox = new Outbox({ rate: 10, burst: 20, now: 0 });
  outbox.add("a", "a");
  assert.deepEqual(outbox.take(0), []);
  assert.equal(outbox.wakeIn(0), null);
  outbox.opened();
  outbox.add("b", "b");
  assert.deepEqual(outbox.take(0).map((m) => m.id), ["a", "b"]);
  outbox.closed();
  assert.deepEqual(outbox.take(10), []);
  outbox.opened();
  assert.deepEqual(outbox.take(20).map((m) => m.id), ["a", "b"]);
});
