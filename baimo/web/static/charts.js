// Chart helpers shared by the usage page's charts (inline SVG, no chart library).

const SVG_NS = "http://www.w3.org/2000/svg";
export const CHART_HEIGHT = 240;

export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// A whole-number step for `ticks` grid lines covering v (1, 2, 5 × 10^k).
export function niceStep(v, ticks) {
  const raw = Math.max(1, v / ticks);
  const exp = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    const step = m * exp;
    if (step >= raw && Number.isInteger(step)) return step;
  }
  return 10 * exp;
}

// An empty chart of width × height pixels, described for screen readers by `label`.
export function chartSvg(testid, width, height, label) {
  return s("svg", { class: "chart-svg", "data-testid": testid, width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

// The frame of a bar chart of counts drawn in `container`: size, margins, plot area and a y scale whose top is
// a round number of `ticks` steps above `maxValue`.
export function countFrame(container, maxValue) {
  const width = Math.max(300, Math.floor(container.clientWidth || 640));
  const height = CHART_HEIGHT;
  const m = { top: 20, right: 8, bottom: 28, left: 44 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const ticks = 4;
  const step = niceStep(Math.max(1, maxValue), ticks);
  const y = (v) => m.top + plotH - (v / (step * ticks)) * plotH;
  return { width, height, m, plotW, plotH, ticks, step, y };
}

// Horizontal grid lines of a frame (the first one is the axis), labelled on the left by `label(value)`.
export function gridLines(f, label) {
  const grid = s("g", { class: "chart-grid" });
  for (let i = 0; i <= f.ticks; i++) {
    const yy = Math.round(f.y(f.step * i)) + 0.5;
    grid.append(s("line", { x1: f.m.left, x2: f.width - f.m.right, y1: yy, y2: yy, class: i === 0 ? "axis" : "" }));
    grid.append(s("text", { x: f.m.left - 8, y: yy + 4, "text-anchor": "end", class: "tick" }, label(f.step * i)));
  }
  return grid;
}
