// The page: views chosen by the address's #fragment, the live job stream, the access token.
import { followJobs, onUnauthorized, token } from "./api.js";
import { $ } from "./dom.js";
import { initCompare } from "./compare.js";
import { initJobs, openJob } from "./jobs.js";
import { fillOfferChoices, initOffers } from "./offers.js";
import { initRun, loadApps, loadFiles } from "./run.js";
import { setJobs } from "./state.js";

const VIEWS = ["run", "jobs", "job", "compare", "offers"];

function route() {
  const [name, arg] = (location.hash.slice(1) || "run").split("/");
  const view = VIEWS.includes(name) ? name : "run";
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("nav a[data-view]")) a.classList.toggle("active", a.dataset.view === view || (view === "job" && a.dataset.view === "jobs"));
  if (view === "job" && arg) openJob(arg);
  if (view === "offers") fillOfferChoices();
}

function banner(message) {
  $("banner").textContent = message;
  $("banner").hidden = !message;
}

async function start() {
  try {
    await Promise.all([loadApps(), loadFiles()]);
    banner("");
  } catch (err) { banner(err.message); }
}

onUnauthorized(() => { $("token-form").hidden = false; banner("This server needs an access token: paste yours above."); });
$("token-form").addEventListener("submit", (e) => { e.preventDefault(); token.set($("token").value.trim()); start(); });
initRun();
initJobs();
initCompare();
initOffers();
window.addEventListener("hashchange", route);
route();
start();
followJobs(setJobs, (on) => $("live").classList.toggle("on", on));
