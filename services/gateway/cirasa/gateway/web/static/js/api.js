// The gateway's HTTP faces as the page uses them: one error type carrying the server's own message,
// the bearer token (when auth is on) added to every request, and the job stream read with fetch
// (EventSource cannot send an Authorization header).
export const CAESAR = "/caesar/api/v1.0";
export const API = "/cirasa/api/v1";

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const tokenKey = "cirasa.token";
export const token = {
  get: () => sessionStorage.getItem(tokenKey) || "",
  set: (value) => sessionStorage.setItem(tokenKey, value),
};
const listeners = { unauthorized: () => {} };
export function onUnauthorized(fn) { listeners.unauthorized = fn; }

function headers(extra = {}) {
  const h = { ...extra };
  if (token.get()) h.Authorization = `Bearer ${token.get()}`;
  return h;
}

async function messageOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return body.status || body.message || body.error_description || body.detail || text;
  } catch { return text || response.statusText; }
}

export async function request(method, url, { json, body, accept } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}) };
  if (json !== undefined) { init.body = JSON.stringify(json); init.headers["Content-Type"] = "application/json"; }
  else if (body !== undefined) init.body = body;
  let response;
  try { response = await fetch(url, init); }
  catch { throw new ApiError(0, "the server does not answer; is it running?"); }
  if (response.status === 401) listeners.unauthorized();
  if (!response.ok) throw new ApiError(response.status, `${response.status}: ${await messageOf(response)}`);
  return response;
}

export const getJSON = async (url) => (await request("GET", url)).json();
export const getText = async (url) => (await request("GET", url)).text();

// Upload with progress (fetch has none for request bodies): XMLHttpRequest.
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append("file", file);
    xhr.open("POST", `${CAESAR}/upload`);
    if (token.get()) xhr.setRequestHeader("Authorization", `Bearer ${token.get()}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { body = { status: xhr.responseText }; }
      if (xhr.status === 401) listeners.unauthorized();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, `${xhr.status}: ${body.status || xhr.statusText}`));
    };
    xhr.onerror = () => reject(new ApiError(0, "the server does not answer; is it running?"));
    xhr.send(form);
  });
}

// Server-sent events over fetch: calls onJobs(list) on every `jobs` event, reconnects when the
// stream ends or breaks, and reports whether it is connected.
export async function followJobs(onJobs, onLive) {
  for (;;) {
    try {
      const response = await request("GET", `${API}/events`, { accept: "text/event-stream" });
      onLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const lines = block.split("\n");
          const event = (lines.find((l) => l.startsWith("event: ")) || "").slice(7);
          const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (event === "jobs" && data) onJobs(JSON.parse(data));
        }
      }
    } catch { /* reconnect below */ }
    onLive(false);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
