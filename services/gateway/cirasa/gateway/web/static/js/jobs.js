// The Jobs view (live, from the server's event stream) and one job's page: facts, cancel, delete,
// archive, log tail, products, and for a finished finder run the sky with its sources and the table.
import { API, CAESAR, getJSON, getText, request } from "./api.js";
import { CatalogueTable } from "./catalogue.js";
import { $, bytes, copy, el, seconds, show, when } from "./dom.js";
import { focusSource, showSky } from "./sky.js";
import { elapsed, jobById, onJobs, state } from "./state.js";

const DOWNLOADS = [[".csv", "CSV"], [".vot", "VOTable"], [".reg", "DS9 regions"]];
let table = null;
let sky = null;
let shownState = null;
let ticks = 0;

function stateCell(job) { return el("td", { className: `state-${job.state}`, text: job.state }); }

function renderJobs(jobs) {
  const rows = jobs.map((j) => el("tr", { dataset: { jobId: j.job_id } }, [
    el("td", {}, [el("a", { href: `#job/${j.job_id}`, className: "id", text: j.job_id }), " ",
      el("button", { className: "copy", text: "copy", onclick: (e) => copy(j.job_id, e.target) })]),
    el("td", { text: j.app }),
    el("td", { text: j.file_name || j.data_inputs }),
    stateCell(j),
    el("td", { text: j.status }),
    el("td", { className: "elapsed", text: seconds(elapsed(j)) }),
    el("td", {}, [
      j.final ? null : el("button", { text: "cancel", onclick: () => cancel(j.job_id) }),
      el("button", { text: "delete", onclick: () => remove(j.job_id) }),
    ]),
  ]));
  $("jobs").replaceChildren(...rows);
  $("no-jobs").hidden = jobs.length > 0;
}

function tick() {  // elapsed time moves while a job runs
  for (const row of $("jobs").children) {
    const job = jobById(row.dataset.jobId);
    if (job && job.state === "RUNNING") row.querySelector(".elapsed").textContent = seconds(elapsed(job));
  }
  const current = state.currentJob && jobById(state.currentJob);
  if (current && current.state === "RUNNING") {
    $("fact-elapsed").textContent = seconds(elapsed(current));
    ticks += 1;
    if (ticks % 3 === 0) loadLog(current.job_id);  // the log grows while it runs
  }
}

async function cancel(jobId) {
  try {
    const reply = await (await request("POST", `${CAESAR}/job/${jobId}/cancel`)).json();
    show($("job-msg"), reply.status, "good");
  } catch (err) { show($("job-msg"), err.message, "bad"); alert(err.message); }
}

async function remove(jobId) {
  if (!confirm(`Delete job ${jobId}? A job still under way is cancelled first.`)) return;
  try {
    await request("DELETE", `${API}/jobs/${jobId}`);
    if (state.currentJob === jobId) location.hash = "#jobs";
  } catch (err) { alert(err.message); }
}

function fact(label, value, id) {
  return [el("dt", { text: label }), el("dd", { text: value ?? "", id: id || "" })];
}

function renderFacts(job, detail) {
  const rows = [
    fact("app", job.app), fact("image", `${job.file_name || ""} (${job.data_inputs})`),
    fact("state", job.state, "fact-state"), fact("status", job.status, "fact-status"),
    fact("platform", job.platform || "not yet placed"), fact("submitted", when(job.submit_date)),
    fact("started", when(job.start_date)), fact("ended", when(job.end_date)),
    fact("elapsed", seconds(elapsed(job)), "fact-elapsed"),
    fact("exit code", job.final ? job.exit_code : ""),
    fact("options", JSON.stringify(detail.job_inputs)),
  ];
  $("job-facts").replaceChildren(...rows.flat());
  $("fact-state").className = `state-${job.state}`;
  $("job-cancel").disabled = job.final;
}

async function loadLog(jobId) {
  try { $("log").textContent = (await getText(`${API}/jobs/${jobId}/log?stream=${$("log-stream").value}&tail=200`)) || "(empty)"; }
  catch (err) { $("log").textContent = err.message; }
}

function renderProducts(jobId, products) {
  const link = (p) => el("a", { href: `${API}/jobs/${jobId}/products/${encodeURIComponent(p.name)}`, text: p.name, download: p.name });
  $("products").replaceChildren(...products.map((p) => el("li", {}, [link(p), ` ${bytes(p.size_bytes)}`])));
  if (!products.length) $("products").replaceChildren(el("li", { className: "muted", text: "none yet" }));
  const downloads = DOWNLOADS.map(([ext, label]) => {
    const p = products.find((q) => q.name.startsWith("catalog") && q.name.endsWith(ext)) || products.find((q) => q.name.endsWith(ext));
    return p ? el("a", { className: "button", href: `${API}/jobs/${jobId}/products/${encodeURIComponent(p.name)}`, download: p.name, text: label }) : null;
  }).filter(Boolean);
  $("cat-downloads").replaceChildren(...downloads);
}

async function loadSky(jobId) {
  $("job-sky-card").hidden = true;
  $("job-cat-card").hidden = true;
  try { sky = await getJSON(`${API}/jobs/${jobId}/sky`); } catch { sky = null; return; }
  const sources = sky.catalogue ? sky.catalogue.sources : [];
  const blob = await (await request("GET", sky.image_url)).blob();
  $("job-sky-card").hidden = false;
  showSky($("viewer"), sky, URL.createObjectURL(blob), sources, (text) => ($("sky-count").textContent = text));
  if (sky.catalogue) {
    $("job-cat-card").hidden = false;
    table.show(sources);
  }
}

export async function openJob(jobId) {
  state.currentJob = jobId;
  shownState = null;
  $("job-id").textContent = jobId;
  $("job-archive").href = `${CAESAR}/job/${jobId}/output`;
  show($("job-msg"), "");
  await refreshJob(jobId);
}

async function refreshJob(jobId) {
  let detail;
  try { detail = await getJSON(`${API}/jobs/${jobId}`); } catch (err) { show($("job-msg"), err.message, "bad"); return; }
  if (state.currentJob !== jobId) return;
  const job = jobById(jobId) || detail;
  renderFacts(job, detail);
  $("job-archive").hidden = !job.final;
  renderProducts(jobId, detail.products);
  await loadLog(jobId);
  if (job.final && shownState !== job.state) await loadSky(jobId);
  shownState = job.state;
}

export function initJobs() {
  table = new CatalogueTable($("catalogue"), $("cat-shown"), (source) => sky && focusSource(sky, source));
  $("cat-filter").addEventListener("input", (e) => table.setFilter(e.target.value));
  $("log-stream").addEventListener("change", () => state.currentJob && loadLog(state.currentJob));
  $("job-cancel").addEventListener("click", () => cancel(state.currentJob));
  $("job-delete").addEventListener("click", () => remove(state.currentJob));
  $("job-copy").addEventListener("click", (e) => copy(state.currentJob, e.target));
  onJobs((jobs) => {
    renderJobs(jobs);
    const current = state.currentJob && jobs.find((j) => j.job_id === state.currentJob);
    if (current && !$("view-job").hidden && (current.state !== shownState || !current.final)) refreshJob(current.job_id);
  });
  setInterval(tick, 1000);
}
