// When to tell the room "I am typing" (docs/client.md: at most every 3 s, expiring after 6 s on the
// readers' side), within the server's typing limit (TYPING_RATE_PER_SECOND, TYPING_BURST) by
// design: a notice the bucket has no token for is simply not sent. A sent message ends typing
// on every reader's page by itself, so sending one is never followed by a "stopped typing".
import { Bucket } from "./bucket.js";

export const TYPING_INTERVAL_MS = 3000;

export class TypingNotifier {
  // rate, burst: the server's limit; one token is kept in reserve for network jitter (two
  // notices sent apart may arrive together).
  constructor({ rate, burst, now, interval = TYPING_INTERVAL_MS }) {
    this.bucket = new Bucket(rate, Math.max(1, burst - 1), now);
    this.interval = interval;
    this.active = false;
    this.wanted = false; // typing, but the notice waits for a token
    this.sentAt = -Infinity;
  }

  // The composer changed. Returns true/false for the `typing` frame to send, or null.
  input(hasText, now) {
    if (!hasText) return this.stop(now);
    if (this.active && now - this.sentAt < this.interval) return null;
    if (!this.bucket.take(now)) {
      this.wanted = !this.active; // a renewal can be skipped; the first notice is worth a wait
      return null;
    }
    this.wanted = false;
    this.active = true;
    this.sentAt = now;
    return true;
  }

  // The composer was emptied or left: false when readers were told we type, else null.
  stop(now) {
    this.wanted = false;
    if (!this.active) return null;
    this.active = false;
    // Without a token, say nothing: the notice expires on the readers' side by itself.
    return this.bucket.take(now) ? false : null;
  }

  // A message went out: it ends typing for the readers, no frame needed.
  sent() {
    this.active = false;
    this.wanted = false;
  }

  // The socket went away: whatever we said is forgotten on the server side.
  reset() {
    this.active = false;
    this.wanted = false;
  }

  // Milliseconds until a first notice that found no token may go out (call `input` again
  // then), or null when none waits.
  retryIn(now) {
    return this.wanted ? this.bucket.wait(now) : null;
  }
}
