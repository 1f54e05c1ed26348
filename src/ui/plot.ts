/**
 * Small line plots as SVG markup (loss per step, EM per round). Hand-written: a plotting library
 * would outweigh the page for two charts. Pure string building, tested in Node; the page inserts
 * the result with innerHTML (numbers and escaped labels only).
 */
export interface PlotOptions {
  readonly width?: number;
  readonly height?: number;
  /** Axis titles. */
  readonly xLabel?: string;
  readonly yLabel?: string;
  /** Fixed y range (e.g. [0, 1] for EM); default: the data's range with a margin. */
  readonly yRange?: readonly [number, number];
  /** Accessible description (role="img" + <title>). */
  readonly title: string;
  /** Draw a dot at each point (few points, e.g. rounds). */
  readonly dots?: boolean;
}

export interface Point {
  readonly x: number;
  readonly y: number;
}

const escapeXml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function niceNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.01 ? v.toFixed(2) : v.toExponential(1);
}

/** Data → pixel scale of one axis. */
export function linearScale(domain: readonly [number, number], range: readonly [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/** An SVG line plot of `points` (x ascending); an empty series draws the axes and a "no data yet" note. */
export function linePlotSvg(points: readonly Point[], options: PlotOptions): string {
  const width = options.width ?? 480;
  const height = options.height ?? 200;
  const pad = { left: 48, right: 12, top: 12, bottom: 34 };
  const finite = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = finite.map((p) => p.x);
  const ys = finite.map((p) => p.y);
  const xDomain: [number, number] = xs.length ? [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)] : [0, 1];
  let yDomain: [number, number];
  if (options.yRange) yDomain = [options.yRange[0], options.yRange[1]];
  else if (ys.length) {
    const lo = Math.min(...ys);
    const hi = Math.max(...ys);
    const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
    yDomain = [Math.max(0, lo - margin) === 0 && lo >= 0 ? 0 : lo - margin, hi + margin];
  } else yDomain = [0, 1];
  const x = linearScale(xDomain, [pad.left, width - pad.right]);
  const y = linearScale(yDomain, [height - pad.bottom, pad.top]);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${escapeXml(options.title)}" class="plot">`,
  );
  parts.push(`<title>${escapeXml(options.title)}</title>`);
  // Grid lines and y ticks at quarters of the range.
  for (let i = 0; i <= 4; i++) {
    const v = yDomain[0] + ((yDomain[1] - yDomain[0]) * i) / 4;
    const py = y(v).toFixed(1);
    parts.push(`<line class="grid" x1="${pad.left}" x2="${width - pad.right}" y1="${py}" y2="${py}"/>`);
    parts.push(`<text class="tick" x="${pad.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${niceNumber(v)}</text>`);
  }
  // Integer x (steps, rounds): every value when few, else ends and middle; otherwise ends only.
  const integral = xs.every(Number.isInteger);
  const span = xDomain[1] - xDomain[0];
  const xTicks = !xs.length
    ? []
    : integral && span <= 10
      ? Array.from({ length: span + 1 }, (_, i) => xDomain[0] + i)
      : integral
        ? [xDomain[0], Math.round(xDomain[0] + span / 2), xDomain[1]]
        : [xDomain[0], xDomain[1]];
  for (const v of xTicks) parts.push(`<text class="tick" x="${x(v).toFixed(1)}" y="${height - pad.bottom + 14}" text-anchor="middle">${niceNumber(v)}</text>`);
  parts.push(`<line class="axis" x1="${pad.left}" x2="${width - pad.right}" y1="${height - pad.bottom}" y2="${height - pad.bottom}"/>`);
  if (options.xLabel)
    parts.push(`<text class="label" x="${(pad.left + width - pad.right) / 2}" y="${height - 4}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  if (options.yLabel)
    parts.push(
      `<text class="label" x="12" y="${(pad.top + height - pad.bottom) / 2}" text-anchor="middle" transform="rotate(-90 12 ${(pad.top + height - pad.bottom) / 2})">${escapeXml(options.yLabel)}</text>`,
    );
  if (finite.length) {
    const d = finite.map((p, i) => `${i ? 'L' : 'M'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join('');
    parts.push(`<path class="series" d="${d}" fill="none"/>`);
    if (options.dots || finite.length === 1)
      for (const p of finite) parts.push(`<circle class="dot" cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3.5"/>`);
  } else {
    parts.push(`<text class="empty" x="${width / 2}" y="${height / 2}" text-anchor="middle">no data yet</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}
