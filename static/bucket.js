// A token bucket like the server's (chat/ratelimit.py): `burst` tokens, refilled at `rate` per
// second. The page keeps one per server limit so that it stays within the limit by design
// instead of being refused. Times are milliseconds (Date.now() or a test's clock).
export class Bucket {
  constructor(rate, burst, now) {
    this.rate = rate;
    this.burst = burst;
    this.level = burst;
    this.stamp = now;
  }

  tokens(now) {
    return Math.min(this.burst, this.level + ((now - this.stamp) / 1000) * this.rate);
  }

  // Take one token if there is one; true when taken.
  take(now) {
    const tokens = this.tokens(now);
    if (tokens < 1) return false;
    this.level = tokens - 1;
    this.stamp = now;
    return true;
  }

  // Milliseconds until `want` tokens are there (0 when they are now).
  wait(now, want = 1) {
    const tokens = this.tokens(now);
    return tokens >= want ? 0 : Math.ceil(((want - tokens) / this.rate) * 1000);
  }

  // The server said the bucket is empty: believe it (another tab may share the limit).
  drain(now) {
    this.level = 0;
    this.stamp = now;
  }
}
