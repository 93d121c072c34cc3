// The Run view: files (upload, choose, delete), the app and its options form, submit.
import { API, CAESAR, getJSON, request, upload } from "./api.js";
import { $, bytes, el, show, when } from "./dom.js";
import { renderOptions, values } from "./options.js";
import { state } from "./state.js";

export async function loadFiles() {
  const files = await getJSON(`${CAESAR}/fileids`);
  state.files = files.reverse();  // newest first
  if (!state.files.some((f) => f.fileid === state.selectedFile)) state.selectedFile = null;
  renderFiles();
}

function choose(fileId) {
  state.selectedFile = fileId;
  renderFiles();
}

function renderFiles() {
  const rows = state.files.map((f) => el("tr", { className: f.fileid === state.selectedFile ? "selected" : "", dataset: { fileId: f.fileid } }, [
    el("td", {}, [el("input", { type: "radio", name: "file", value: f.fileid, checked: f.fileid === state.selectedFile, onchange: () => choose(f.fileid), ariaLabel: `choose ${f.filename_orig}` })]),
    el("td", {}, [el("label", { text: f.filename_orig, onclick: () => choose(f.fileid) }), el("div", { className: "id muted", text: f.fileid })]),
    el("td", { text: bytes(f.filesize * 1048576) }),
    el("td", { text: when(f.filedate) }),
    el("td", {}, [el("button", { text: "delete", onclick: () => deleteFile(f) })]),
  ]));
  $("files").replaceChildren(...rows);
  $("no-files").hidden = state.files.length > 0;
  renderTarget();
}

async function deleteFile(file) {
  if (!confirm(`Delete ${file.filename_orig}? Jobs that used it keep their products.`)) return;
  try {
    await request("POST", `${CAESAR}/delete/${file.fileid}`);
    show($("upload-msg"), `Deleted ${file.filename_orig}`, "good");
  } catch (err) { show($("upload-msg"), err.message, "bad"); }
  await loadFiles();
}

export async function loadApps() {
  state.apps = (await getJSON(`${API}/apps`)).apps;
  const select = $("app");
  select.replaceChildren(...state.apps.map((a) => el("option", {
    value: a.name, disabled: !a.runnable, title: a.reason || a.description,
    text: a.runnable ? a.name : `${a.name} (unavailable here)`,
  })));
  const first = state.apps.find((a) => a.runnable && !a.diagnostic) || state.apps.find((a) => a.runnable);
  if (first) select.value = first.name;
  appChanged();
}

function appChanged() {
  const app = state.apps.find((a) => a.name === $("app").value);
  $("app-desc").textContent = app ? app.description : "";
  $("app-reason").hidden = !app || app.runnable;
  $("app-reason").textContent = app && !app.runnable ? `Cannot run here: ${app.reason}` : "";
  renderOptions($("options-form"), app ? app.options : {});
  renderTarget();
}

function renderTarget() {
  const file = state.files.find((f) => f.fileid === state.selectedFile);
  const app = state.apps.find((a) => a.name === $("app").value);
  $("target-file").textContent = file ? `${file.filename_orig} (${file.fileid})` : "no image chosen";
  $("target-app").textContent = app ? app.name : "—";
  $("submit-btn").disabled = !file || !app || !app.runnable;
}

async function doUpload(event) {
  event.preventDefault();
  const input = $("upload-file");
  if (!input.files.length) return;
  const bar = $("upload-progress");
  bar.hidden = false;
  try {
    const reply = await upload(input.files[0], (f) => (bar.value = f));
    show($("upload-msg"), `Uploaded ${reply.filename_orig}`, "good");
    state.selectedFile = reply.uuid;  // a new upload is the chosen image
    input.value = "";
  } catch (err) { show($("upload-msg"), `Upload failed: ${err.message}`, "bad"); }
  bar.hidden = true;
  await loadFiles();
}

async function submit() {
  const msg = $("submit-msg");
  let jobInputs;
  try { jobInputs = values($("options-form")); } catch (err) { show(msg, err.message, "bad"); return; }
  const body = { app: $("app").value, job_inputs: jobInputs, data_inputs: state.selectedFile };
  try {
    const reply = await (await request("POST", `${CAESAR}/job`, { json: body })).json();
    const ignored = reply.ignored_options && reply.ignored_options.length ? ` (ignored options: ${reply.ignored_options.join(", ")})` : "";
    show(msg, `Job ${reply.job_id} submitted${ignored}`, ignored ? "bad" : "good");
    location.hash = `#job/${reply.job_id}`;
  } catch (err) { show(msg, `Not submitted: ${err.message}`, "bad"); }
}

export function initRun() {
  $("upload-form").addEventListener("submit", doUpload);
  $("app").addEventListener("change", appChanged);
  $("submit-btn").addEventListener("click", submit);
}
