/**
 * The runner's progress line: a bar, percent, experiment i/n, ETA from the rate so far, and what
 * is happening now. Pure formatting; the CLI decides where and how often to draw it.
 */
import type { RunnerProgress } from './seed-run';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** `[#######.............]  35.2%  exp 3/12  ETA 4m10s  <label>` (ETA unknown until work is done). */
export function formatProgress(p: RunnerProgress, elapsedSeconds: number, width = 24): string {
  const fraction = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const filled = Math.round(fraction * width);
  const eta = p.done > 0 ? (elapsedSeconds / p.done) * (p.total - p.done) : NaN;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1).padStart(5)}%  exp ${p.experiment}/${p.experiments}  ETA ${formatDuration(eta)}  ${p.label}`;
}
