// node --test: choosing files to attach and following their uploads (static/uploads.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Uploads, chooseFiles, filesFrom, formatSize, pastedName, uploadError,
} from "../../static/uploads.js";

test("sizes read as people read them", () => {
  assert.equal(formatSize(0), "0 B");
  assert.equal(formatSize(1023), "1023 B");
  assert.equal(formatSize(1024), "1 KB");
  assert.equal(formatSize(1536), "1.5 KB");
  assert.equal(formatSize(200 * 1024), "200 KB");
  assert.equal(formatSize(10 * 1024 * 1024), "10 MB");
  assert.equal(formatSize(3.25 * 1024 ** 3), "3.3 GB");
});

test("only files within the limits are uploaded, and the others are said why", () => {
  const files = [
    { name: "a.png", size: 10 },
    { name: "huge.mov", size: 11 * 1024 * 1024 },
    { name: "empty.txt", size: 0 },
    { name: "b.pdf", size: 20 },
    { name: "c.pdf", size: 30 },
  ];
  const { accepted, refused } = chooseFiles(files, {
    maxBytes: 10 * 1024 * 1024, maxFiles: 3, already: 1,
  });
  assert.deepEqual(accepted.map((f) => f.name), ["a.png", "b.pdf"]);
  assert.deepEqual(refused.map((r) => r.name), ["huge.mov", "empty.txt", "c.pdf"]);
  assert.match(refused[0].why, /11 MB: files are at most 10 MB/);
  assert.match(refused[2].why, /At most 3 files/);
});

test("a drop or paste carries files, or items of kind file, never text", () => {
  const file = { name: "x.png", size: 3 };
  assert.deepEqual(filesFrom({ files: [file], items: [] }), [file]);
  const items = [
    { kind: "string", getAsFile: () => null },
    { kind: "file", getAsFile: () => file },
  ];
  assert.deepEqual(filesFrom({ files: [], items }), [file]);
  assert.deepEqual(filesFrom(null), []);
});

test("a pasted screenshot gets a dated name", () => {
  const now = new Date(2026, 10, 29, 9, 5, 7).getTime();
  assert.equal(pastedName("image.png", "image/png", now), "pasted-2026-11-29-090507.png");
  assert.equal(pastedName("", "image/jpeg", now), "pasted-2026-11-29-090507.jpeg");
  assert.equal(pastedName("report.pdf", "application/pdf", now), "report.pdf");
});

test("uploads progress, finish, fail and are cancelled; the message carries the finished", () => {
  const ups = new Uploads();
  const a = ups.add("a.png", 1000);
  const b = ups.add("b.txt", 10);
  const c = ups.add("c.zip", 50);
  assert.equal(ups.busy(), true);
  ups.progress(a.key, 250, 1000);
  assert.equal(ups.percent(a.key), 25);
  ups.done(a.key, { id: "id-a", name: "a.png" });
  ups.failed(b.key, "too large");
  ups.progress(b.key, 10, 10); // a failed upload moves no more
  assert.equal(ups.get(b.key).error, "too large");
  assert.equal(ups.percent(b.key), 0);
  ups.remove(c.key); // cancelled
  assert.equal(ups.busy(), false);
  assert.deepEqual(ups.ready(), [{ id: "id-a", name: "a.png" }]);
  assert.equal(ups.count(), 1);
  ups.done(c.key, { id: "late" }); // its answer after the cancel changes nothing
  assert.deepEqual(ups.ready().map((f) => f.id), ["id-a"]);
  ups.clear();
  assert.deepEqual(ups.ready(), []);
});

test("a refusal reads as the server's sentence, or a plain one", () => {
  assert.equal(uploadError(413, { message: "The file is larger than 10.0 MB." }),
    "The file is larger than 10.0 MB.");
  assert.equal(uploadError(413, null), "The file is too large.");
  assert.match(uploadError(0, null), /connection was lost/);
  assert.equal(uploadError(500, {}), "The upload failed (500).");
});
