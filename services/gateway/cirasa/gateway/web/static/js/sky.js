// The input image in OpenSeadragon (vendored from npm, served by the gateway) with one circle per
// catalogue source, placed from the source's 0-based FITS pixel position onto the PNG's grid (the PNG
// is the image flipped top to bottom, every `step`-th pixel).
import { el } from "./dom.js";

const MAX_MARKERS = 3000;
let viewer = null;
let markers = [];

function pngPoint(sky, x, y) {
  const rows = Math.ceil(sky.height / sky.step);
  return { x: x / sky.step + 0.5, y: rows - 1 - y / sky.step + 0.5 };
}

// `imageUrl`: the PNG, already fetched with the page's credentials (a blob: URL).
export function showSky(container, sky, imageUrl, sources, note) {
  if (viewer) { viewer.destroy(); viewer = null; }
  container.replaceChildren();
  markers = [];
  viewer = window.OpenSeadragon({
    element: container,
    prefixUrl: "/static/vendor/openseadragon/images/",
    tileSources: { type: "image", url: imageUrl, buildPyramid: false },
    showNavigator: true,
    maxZoomPixelRatio: 16,
    imageSmoothingEnabled: false,
    gestureSettingsMouse: { clickToZoom: false },
  });
  const shown = sources.slice(0, MAX_MARKERS);
  note(shown.length < sources.length ? `(circles on the first ${shown.length} of ${sources.length} sources)` : `(${sources.length} sources)`);
  viewer.addHandler("open", () => {
    const radius = Math.max(5, Math.ceil(Math.max(sky.width, sky.height) / 80)) / sky.step;
    for (const source of shown) {
      const p = pngPoint(sky, source.x_pix, source.y_pix);
      const marker = el("div", { className: "marker", title: source.source_id });
      marker.dataset.sourceId = source.source_id;
      const rect = viewer.viewport.imageToViewportRectangle(p.x - radius, p.y - radius, 2 * radius, 2 * radius);
      viewer.addOverlay({ element: marker, location: rect });
      markers.push(marker);
    }
    container.dataset.markers = String(markers.length);
    container.dataset.ready = "1";
  });
}

export function focusSource(sky, source) {
  if (!viewer) return;
  for (const m of markers) m.classList.toggle("hit", m.dataset.sourceId === source.source_id);
  const p = pngPoint(sky, source.x_pix, source.y_pix);
  viewer.viewport.panTo(viewer.viewport.imageToViewportCoordinates(p.x, p.y));
  viewer.viewport.zoomTo(Math.max(viewer.viewport.getZoom(), viewer.viewport.getHomeZoom() * 4));
}
