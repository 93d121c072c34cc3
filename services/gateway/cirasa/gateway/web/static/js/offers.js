// The Offers view: an ExecutionBroker request for an app on an image, the platforms' offers, and
// accepting or rejecting each (POST /sessions/<id> with a phase update).
import { request } from "./api.js";
import { $, el, show, when } from "./dom.js";
import { state } from "./state.js";

const APP_KIND = "urn:cirasa:eb:executable:cirasa-app-1.0";
const COMPUTE_KIND = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/compute/simple-compute-resource-1.0";
let offers = [];

export function fillOfferChoices() {
  $("offer-app").replaceChildren(...state.apps.filter((a) => a.runnable).map((a) => el("option", { value: a.name, text: a.name })));
  $("offer-file").replaceChildren(...state.files.map((f) => el("option", { value: f.fileid, text: f.filename_orig })));
  if (state.selectedFile) $("offer-file").value = state.selectedFile;
}

function renderOffers() {
  $("offers").replaceChildren(...offers.map((o) => {
    const cost = o.costs && o.costs.length ? o.costs[0].min : "";
    const open = o.phase === "OFFERED";
    return el("tr", { dataset: { sessionId: o.meta.uuid } }, [
      el("td", { text: o.meta.name || "" }),
      el("td", { text: when(o.schedule.preparing.start) }),
      el("td", { text: o.compute.cores.min }),
      el("td", { text: cost }),
      el("td", { text: when(o.expires) }),
      el("td", { text: o.phase }),
      el("td", {}, open ? [
        el("button", { text: "accept", onclick: () => decide(o, "ACCEPTED") }),
        el("button", { text: "reject", onclick: () => decide(o, "REJECTED") }),
      ] : []),
    ]);
  }));
}

async function decide(offer, value) {
  try {
    const body = { kind: "uri:enum-value-update", path: "phase", value };
    const session = await (await request("POST", `/sessions/${offer.meta.uuid}`, { json: body })).json();
    offers = offers.map((o) => (o.meta.uuid === session.meta.uuid ? session : o));
    renderOffers();
    show($("offer-msg"), value === "ACCEPTED" ? "Accepted: the job is in the Jobs list" : "Rejected", "good");
  } catch (err) { show($("offer-msg"), err.message, "bad"); }
}

async function ask(event) {
  event.preventDefault();
  const minutes = Math.max(1, parseInt($("offer-minutes").value, 10) || 1);
  const cores = Math.max(1, parseInt($("offer-cores").value, 10) || 1);
  const body = {
    executable: { kind: APP_KIND, app: $("offer-app").value, options: {}, inputs: [$("offer-file").value] },
    compute: { kind: COMPUTE_KIND, cores: { min: cores, max: cores } },
    schedule: { requested: { duration: `PT${minutes}M` } },
  };
  try {
    const set = await (await request("POST", "/offersets", { json: body })).json();
    offers = set.offers || [];
    const why = (set.meta.messages || []).map((m) => m.message).join("; ");
    show($("offer-msg"), set.result === "YES" ? `${offers.length} offer(s)` : `No offer: ${why}`, set.result === "YES" ? "good" : "bad");
    renderOffers();
  } catch (err) { show($("offer-msg"), err.message, "bad"); }
}

export function initOffers() { $("offer-form").addEventListener("submit", ask); }
