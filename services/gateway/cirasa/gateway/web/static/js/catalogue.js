// A catalogue as a table: click a heading to sort, type a filter (text matches ids; `snr>10`,
// `peak_flux_jy<=0.002`... compares a column), click a row to select the source.
import { el, number } from "./dom.js";

const COLUMNS = [
  "source_id", "ra_deg", "dec_deg", "x_pix", "y_pix", "peak_flux_jy", "int_flux_jy", "snr",
  "maj_arcsec", "min_arcsec", "pa_deg",
];
const MAX_ROWS = 2000;
const COMPARISON = /^\s*([a-z_]+)\s*(<=|>=|<|>|=)\s*(-?[\d.]+(?:e-?\d+)?)\s*$/i;
const TESTS = { "<": (a, b) => a < b, "<=": (a, b) => a <= b, ">": (a, b) => a > b, ">=": (a, b) => a >= b, "=": (a, b) => a === b };

function filterRows(rows, text) {
  const m = COMPARISON.exec(text);
  if (m && COLUMNS.includes(m[1])) {
    const [, key, op, value] = m;
    return rows.filter((r) => r[key] !== null && r[key] !== undefined && TESTS[op](r[key], Number(value)));
  }
  const needle = text.trim().toLowerCase();
  if (!needle) return rows;
  return rows.filter((r) => `${r.source_id} ${r.component_id}`.toLowerCase().includes(needle));
}

function sortRows(rows, key, direction) {
  const sign = direction === "desc" ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    if (typeof x === "string" || typeof y === "string") return String(x).localeCompare(String(y), undefined, { numeric: true }) * sign;
    return (x < y ? -1 : 1) * sign;
  });
}

export class CatalogueTable {
  constructor(table, counter, onPick) {
    Object.assign(this, { table, counter, onPick, rows: [], filter: "", key: "source_id", direction: "asc" });
  }

  show(rows) { this.rows = rows; this.render(); }

  setFilter(text) { this.filter = text; this.render(); }

  sortBy(key) {
    this.direction = this.key === key && this.direction === "asc" ? "desc" : "asc";
    this.key = key;
    this.render();
  }

  render() {
    const kept = sortRows(filterRows(this.rows, this.filter), this.key, this.direction);
    const arrow = (k) => (k === this.key ? (this.direction === "asc" ? " ▲" : " ▼") : "");
    const head = el("tr", {}, COLUMNS.map((k) =>
      el("th", { text: k + arrow(k), dataset: { key: k }, onclick: () => this.sortBy(k) })));
    const body = kept.slice(0, MAX_ROWS).map((r) =>
      el("tr", { onclick: () => this.onPick(r), dataset: { sourceId: r.source_id } },
        COLUMNS.map((k) => el("td", { text: k === "source_id" ? r[k] : number(r[k]) }))));
    this.table.replaceChildren(el("thead", {}, [head]), el("tbody", {}, body));
    const capped = kept.length > MAX_ROWS ? ` (first ${MAX_ROWS} listed)` : "";
    this.counter.textContent = `${kept.length} of ${this.rows.length} sources${capped}`;
  }
}
