/**
 * Hand-written SVG line charts for the CRAB report (no plotting dependency): series of points
 * with optional ± error bars, linear axes with round tick values, a legend.
 */

export interface PlotPoint {
  readonly x: number;
  readonly y: number;
  /** Half-height of an error bar (e.g. the std over seeds). */
  readonly err?: number;
}

export interface PlotSeries {
  readonly name: string;
  readonly points: readonly PlotPoint[];
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly PlotSeries[];
  /** Tick positions on x (default: every x of the data). */
  readonly xTicks?: readonly number[];
  /** Spread x ticks evenly whatever their values (shots 16/32/64 read better evenly spaced). */
  readonly categoricalX?: boolean;
  /**
   * Fit the y axis to the data's range instead of starting at 0 (a loss that moves from 10.37 to
   * 10.30 would be a flat line on a 0–12 axis); the axis says so by not starting at 0.
   */
  readonly fitY?: boolean;
}

/** Colour-blind-safe palette (Okabe–Ito). */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442', '#000000'];

const W = 560;
const H = 360;
const M = { left: 64, right: 150, top: 40, bottom: 52 };

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" step (1, 2 or 5 × 10^n) giving about `count` ticks over [0, max]. */
export function niceStep(max: number, count = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

const fmt = (v: number) => String(Number(v.toPrecision(6)));

export function lineChartSvg(chart: LineChart): string {
  const xs = [...new Set(chart.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const xTicks = [...(chart.xTicks ?? xs)].sort((a, b) => a - b);
  const ys = chart.series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y)).map((p) => p.y));
  const yTop = Math.max(0, ...chart.series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y)).map((p) => p.y + (p.err ?? 0))));
  const yLow =
    chart.fitY && ys.length ? Math.min(...chart.series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y)).map((p) => p.y - (p.err ?? 0)))) : 0;
  const yStep = chart.fitY ? niceStep(yTop - yLow > 0 ? yTop - yLow : Math.abs(yTop) || 1) : niceStep(yTop);
  const yMin = chart.fitY ? Math.floor(yLow / yStep + 1e-9) * yStep : 0;
  const yMax = Math.max(yMin + yStep, Math.ceil(yTop / yStep - 1e-9) * yStep);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const xMin = xTicks[0] ?? 0;
  const xMax = xTicks[xTicks.length - 1] ?? 1;
  const px = (x: number) => {
    if (chart.categoricalX) {
      // Categories sit inside the axis, not on its ends.
      const i = xTicks.indexOf(x);
      const pad = 24;
      return M.left + pad + (xTicks.length > 1 ? (i / (xTicks.length - 1)) * (plotW - 2 * pad) : (plotW - 2 * pad) / 2);
    }
    return M.left + (xMax > xMin ? ((x - xMin) / (xMax - xMin)) * plotW : plotW / 2);
  };
  const py = (y: number) => M.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
  const r = (v: number) => v.toFixed(1);

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`);
  // Grid and y ticks.
  for (let i = 0, y = yMin; y <= yMax + 1e-9; i++, y = yMin + i * yStep) {
    parts.push(`<line class="grid" x1="${M.left}" x2="${M.left + plotW}" y1="${r(py(y))}" y2="${r(py(y))}" stroke="#e0e0e0"/>`);
    parts.push(`<text class="ytick" x="${M.left - 6}" y="${r(py(y) + 4)}" text-anchor="end">${fmt(y)}</text>`);
  }
  for (const x of xTicks) {
    parts.push(`<text class="xtick" x="${r(px(x))}" y="${M.top + plotH + 18}" text-anchor="middle">${fmt(x)}</text>`);
  }
  parts.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + plotH}" stroke="#333"/>`);
  parts.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + plotH}" y2="${M.top + plotH}" stroke="#333"/>`);
  parts.push(`<text x="${M.left + plotW / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);

  chart.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    parts.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (pts.length > 1)
      parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${r(px(p.x))},${r(py(p.y))}`).join(' ')}"/>`);
    for (const p of pts) {
      if (p.err)
        parts.push(
          `<line class="errorbar" x1="${r(px(p.x))}" x2="${r(px(p.x))}" y1="${r(py(p.y + p.err))}" y2="${r(py(Math.max(yMin, p.y - p.err)))}" stroke="${colour}"/>`,
        );
      parts.push(`<circle cx="${r(px(p.x))}" cy="${r(py(p.y))}" r="3.5" fill="${colour}" data-x="${fmt(p.x)}" data-y="${fmt(p.y)}"/>`);
    }
    parts.push('</g>');
    const ly = M.top + 10 + i * 20;
    parts.push(`<line x1="${W - M.right + 16}" x2="${W - M.right + 40}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    parts.push(`<text class="legend" x="${W - M.right + 46}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
