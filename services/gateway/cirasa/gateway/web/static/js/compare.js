// The Compare view: two finished jobs' catalogues matched on the sky, scores and the merged list.
import { API, getJSON } from "./api.js";
import { $, el, number, show } from "./dom.js";
import { onJobs } from "./state.js";

const SCORES = ["n_detections", "n_reference", "matched", "false", "duplicates", "completeness", "reliability", "median_offset_arcsec", "median_peak_ratio"];

function fillChoices(jobs) {
  const done = jobs.filter((j) => j.state === "SUCCESS");
  for (const id of ["compare-a", "compare-b"]) {
    const select = $(id);
    const was = select.value;
    select.replaceChildren(...done.map((j) => el("option", { value: j.job_id, text: `${j.app} on ${j.file_name} — ${j.job_id}` })));
    if (done.some((j) => j.job_id === was)) select.value = was;
  }
  if (!$("compare-b").dataset.touched && done.length > 1 && $("compare-a").value === $("compare-b").value) $("compare-b").value = done[1].job_id;
}

function renderMerged(merged) {
  const labels = merged.inputs.map((i) => i.label);
  const head = el("tr", {}, ["source", "RA (deg)", "Dec (deg)", "found by", ...labels.map((l) => `${l} peak (Jy)`)].map((t) => el("th", { text: t })));
  const rows = merged.sources.map((s) => el("tr", {}, [
    el("td", { text: s.id }), el("td", { text: number(s.ra_deg, 8) }), el("td", { text: number(s.dec_deg, 8) }),
    el("td", { text: `${s.n_finders}: ${s.finders.join(", ")}` }),
    ...labels.map((l) => {
      const m = s.members.find((x) => x.finder === l);
      return el("td", { text: m ? number(m.peak_flux_jy) : "—" });
    }),
  ]));
  $("compare-merged").replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
}

async function run(event) {
  event.preventDefault();
  const [a, b] = [$("compare-a").value, $("compare-b").value];
  if (!a || !b) { show($("compare-msg"), "Two successful jobs are needed", "bad"); return; }
  try {
    const result = await getJSON(`${API}/compare?a=${a}&b=${b}&radius_arcsec=${$("compare-radius").value}`);
    const s = result.scores;
    show($("compare-msg"), `${s.detections} against ${s.reference}, within ${s.radius_arcsec} arcsec; ${result.merged.sources.length} merged sources`, "good");
    $("compare-scores").replaceChildren(...SCORES.flatMap((k) => [el("dt", { text: k }), el("dd", { text: number(s[k]) })]));
    renderMerged(result.merged);
  } catch (err) { show($("compare-msg"), err.message, "bad"); }
}

export function initCompare() {
  $("compare-form").addEventListener("submit", run);
  $("compare-b").addEventListener("change", (e) => (e.target.dataset.touched = "1"));
  onJobs(fillChoices);
}
