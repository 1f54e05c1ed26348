/**
 * Rate and ETA of a long job (embedding passages, downloading a model) from (done, total) samples,
 * so progress bars can say "120 / 347 · 41 passages/s · 6 s left". No DOM; tested in Node.
 */
export interface ProgressEstimate {
  readonly done: number;
  readonly total: number;
  /** Items per second since the start (undefined until some time has passed). */
  readonly rate?: number;
  /** Seconds left at that rate. */
  readonly etaSeconds?: number;
  readonly fraction: number;
}

export class ProgressMeter {
  private readonly started: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.started = now();
  }

  estimate(done: number, total: number): ProgressEstimate {
    const seconds = (this.now() - this.started) / 1000;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    if (seconds <= 0 || done <= 0) return { done, total, fraction };
    const rate = done / seconds;
    return { done, total, fraction, rate, etaSeconds: Math.max(0, (total - done) / rate) };
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "120 / 347 · 41.2 passages/s · 6 s left" */
export function describeProgress(p: ProgressEstimate, unit: string): string {
  const parts = [`${p.done} / ${p.total}`];
  if (p.rate !== undefined) parts.push(`${p.rate >= 10 ? p.rate.toFixed(0) : p.rate.toFixed(1)} ${unit}/s`);
  if (p.etaSeconds !== undefined && p.done < p.total) parts.push(`${formatDuration(p.etaSeconds)} left`);
  return parts.join(' · ');
}
