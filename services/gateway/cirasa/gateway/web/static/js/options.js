// An app's options as a form, generated from its description (GET /app/<name>/describe, as
// caesar-rest gives it): numbers with their bounds and defaults, flags as check boxes, enumerations
// as lists; advanced options folded away. values() gives the job_inputs to submit.
import { el } from "./dom.js";

function field(name, spec) {
  const id = `opt-${name}`;
  let input;
  if (spec.type === "none") {
    input = el("input", { id, name, type: "checkbox" });
  } else if (spec.enum) {
    input = el("select", { id, name }, spec.allowed_values.map((v) => el("option", { value: v, text: v })));
    input.value = spec.default ?? spec.allowed_values[0];
  } else if (spec.type === "int" || spec.type === "float") {
    input = el("input", { id, name, type: "number", step: spec.type === "int" ? "1" : "any" });
    if (spec.min !== null && spec.min !== undefined) input.min = spec.min;
    if (spec.max !== null && spec.max !== undefined) input.max = spec.max;
    if (spec.default !== null && spec.default !== undefined) input.value = spec.default;
  } else {
    input = el("input", { id, name, type: "text", maxLength: 1024 });
    if (spec.default !== null && spec.default !== undefined) input.value = spec.default;
  }
  input.dataset.type = spec.type;
  const bounds = spec.min !== undefined && spec.min !== null ? ` [${spec.min} … ${spec.max}]` : "";
  const label = el("label", { for: id }, [
    spec.type === "none" ? input : null, ` ${name}${spec.mandatory ? " *" : ""} `,
    spec.type === "none" ? null : input,
    el("span", { className: "help", text: `${spec.description || ""}${bounds}` }),
  ]);
  return label;
}

export function renderOptions(form, description) {
  form.replaceChildren();
  const entries = Object.entries(description || {});
  const basic = entries.filter(([, s]) => !s.advanced);
  const advanced = entries.filter(([, s]) => s.advanced);
  for (const [name, spec] of basic) form.append(field(name, spec));
  if (advanced.length) {
    const box = el("details", {}, [el("summary", { text: `${advanced.length} advanced options` })]);
    const grid = el("div", { className: "options" });
    for (const [name, spec] of advanced) grid.append(field(name, spec));
    box.append(grid);
    form.append(box);
  }
}

// The options to send, or throws an Error naming the first bad one (the browser's own check first).
export function values(form) {
  const out = {};
  for (const input of form.querySelectorAll("input, select")) {
    const { type } = input.dataset;
    if (type === "none") { out[input.name] = input.checked; continue; }
    if (input.value === "") continue;
    if (!input.checkValidity()) throw new Error(`option ${input.name}: ${input.validationMessage}`);
    out[input.name] = type === "int" ? parseInt(input.value, 10) : type === "float" ? Number(input.value) : input.value;
  }
  return out;
}
