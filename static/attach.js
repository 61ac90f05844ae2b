// The composer's attachments: the attach button, files dropped on the room or pasted into
// the message, each uploaded at once over HTTP (POST /rooms/{room}/files, XMLHttpRequest for
// its upload progress) and listed above the message with a progress bar and a button that
// cancels it (or takes it off once uploaded). The message then carries the uploaded files'
// ids (composer.js). What to upload and each upload's state: uploads.js.
import { Uploads, chooseFiles, filesFrom, formatSize, pastedName, uploadError } from "./uploads.js";

// elements: {button, fileInput, tray, dropZone, input, formError}
export function createAttacher({ room, csrfToken, maxBytes, maxFiles, elements }) {
  const { button, fileInput, tray, dropZone, input, formError } = elements;
  const uploads = new Uploads();
  const requests = new Map(); // key -> its XMLHttpRequest, while uploading

  function start(files, pasted = false) {
    const { accepted, refused } = chooseFiles(files, {
      maxBytes, maxFiles, already: uploads.count(),
    });
    formError.textContent = refused.map((r) => r.why).join(" ");
    for (const file of accepted) {
      const name = pasted ? pastedName(file.name, file.type, Date.now()) : file.name;
      const entry = uploads.add(name, file.size);
      const body = new FormData();
      body.append("file", file, name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/rooms/${encodeURIComponent(room)}/files`);
      xhr.setRequestHeader("X-CSRF-Token", csrfToken);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable || !event.total) return;
        uploads.progress(entry.key, Math.round((file.size * event.loaded) / event.total));
        draw();
      });
      xhr.addEventListener("load", () => {
        requests.delete(entry.key);
        const answer = xhr.response;
        if (xhr.status === 201 && answer && answer.file) uploads.done(entry.key, answer.file);
        else uploads.failed(entry.key, uploadError(xhr.status, answer));
        draw();
      });
      xhr.addEventListener("error", () => {
        requests.delete(entry.key);
        uploads.failed(entry.key, uploadError(0, null));
        draw();
      });
      requests.set(entry.key, xhr);
      xhr.send(body);
    }
    draw();
  }

  function cancel(key) {
    const xhr = requests.get(key);
    requests.delete(key);
    if (xhr) xhr.abort();
    uploads.remove(key);
    draw();
    input.focus();
  }

  function draw() {
    const items = uploads.entries.map((e) => {
      const li = document.createElement("li");
      li.className = "upload";
      li.dataset.status = e.status;
      const name = document.createElement("span");
      name.className = "upload-name";
      name.textContent = e.name;
      const size = document.createElement("span");
      size.className = "upload-size";
      size.textContent = formatSize(e.size);
      li.append(name, " ", size);
      if (e.status === "uploading") {
        const bar = document.createElement("progress");
        bar.max = 100;
        bar.value = uploads.percent(e.key);
        bar.setAttribute("aria-label", `Uploading ${e.name}`);
        li.append(bar);
      } else if (e.status === "failed") {
        const why = document.createElement("span");
        why.className = "why";
        why.setAttribute("role", "alert");
        why.textContent = e.error;
        li.append(why);
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link upload-cancel";
      remove.textContent = e.status === "uploading" ? "Cancel" : "Remove";
      remove.setAttribute("aria-label", `${remove.textContent} ${e.name}`);
      remove.addEventListener("click", () => cancel(e.key));
      li.append(remove);
      return li;
    });
    tray.replaceChildren(...items);
    tray.hidden = items.length === 0;
  }

  button.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    start([...fileInput.files]);
    fileInput.value = "";
  });
  const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  dropZone.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dropZone.classList.add("dropping");
  });
  dropZone.addEventListener("dragleave", (event) => {
    if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove("dropping");
  });
  dropZone.addEventListener("drop", (event) => {
    dropZone.classList.remove("dropping");
    const files = filesFrom(event.dataTransfer);
    if (files.length === 0) return;
    event.preventDefault();
    start(files);
  });
  input.addEventListener("paste", (event) => {
    const files = filesFrom(event.clipboardData);
    if (files.length === 0) return; // text is pasted as text
    event.preventDefault();
    start(files, true);
  });

  return {
    ready: () => uploads.ready(),
    busy: () => uploads.busy(),
    clear() {
      uploads.clear();
      draw();
    },
  };
}
