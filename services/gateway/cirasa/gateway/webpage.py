"""A one-page web client: upload an image, run a finder, follow the job, download its products."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter()

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CIRASA</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}
.SUCCESS{color:#080}.FAILURE,.ABORTED,.TIMED-OUT{color:#b00}.RUNNING{color:#06c}
fieldset{margin-bottom:1rem}
</style></head><body>
<h1>CIRASA source finding</h1>
<fieldset><legend>1. Upload a FITS image</legend>
<form id="up"><input type="file" name="file" accept=".fits"> <button>Upload</button></form>
<p id="upmsg"></p></fieldset>
<fieldset><legend>2. Run a finder</legend>
<form id="job">File <select id="file"></select> App <select id="app"></select>
Options (JSON) <input id="opts" value='{"seedthr": 5}' size="30"> <button>Submit</button></form>
<p id="jobmsg"></p></fieldset>
<h2>Jobs</h2><table><thead><tr><th>job</th><th>app</th><th>state</th><th>status</th><th>elapsed s</th>
<th>products</th></tr></thead><tbody id="jobs"></tbody></table>
<script>
const api = "/caesar/api/v1.0";
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function refresh() {
  const files = await (await fetch(api + "/fileids")).json();
  document.getElementById("file").innerHTML = files.map(f =>
    `<option value="${esc(f.fileid)}">${esc(f.filename_orig)}</option>`).join("");
  const jobs = await (await fetch(api + "/jobs")).json();
  document.getElementById("jobs").innerHTML = jobs.reverse().map(j => `<tr>
    <td>${esc(j.job_id.slice(0, 8))}</td>
    <td>${esc(j.app)}</td><td class="${esc(j.state)}">${esc(j.state)}</td><td>${esc(j.status)}</td>
    <td>${esc(j.elapsed_time)}</td>
    <td>${j.state === "SUCCESS" ?
    `<a href="${api}/job/${esc(j.job_id)}/output">archive</a>
     <a href="${api}/job/${esc(j.job_id)}/sources">catalogue</a>
     <a href="${api}/job/${esc(j.job_id)}/output-plot">preview</a>` : ""}</td></tr>`).join("");
}
async function loadApps() {
  const apps = (await (await fetch(api + "/apps")).json()).apps;
  document.getElementById("app").innerHTML = apps.map(a => `<option>${esc(a)}</option>`).join("");
}
document.getElementById("up").onsubmit = async e => {
  e.preventDefault();
  const r = await fetch(api + "/upload", {method: "POST", body: new FormData(e.target)});
  document.getElementById("upmsg").textContent = (await r.json()).status; refresh();
};
document.getElementById("job").onsubmit = async e => {
  e.preventDefault();
  let opts; try { opts = JSON.parse(document.getElementById("opts").value || "{}"); }
  catch (err) { document.getElementById("jobmsg").textContent = "Options are not valid JSON"; return; }
  const app = document.getElementById("app").value;
  if (!Object.keys(opts).length) opts = {"no-preview": false};
  const r = await fetch(api + "/job", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({app, job_inputs: opts, data_inputs: document.getElementById("file").value})});
  const body = await r.json();
  document.getElementById("jobmsg").textContent = r.status + ": " + body.status; refresh();
};
loadApps(); refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


@router.get("/", include_in_schema=False)
async def index() -> Response:
    return HTMLResponse(INDEX_HTML)
