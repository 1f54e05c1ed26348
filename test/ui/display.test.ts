import { describe, expect, it } from 'vitest';
import { highlightOccurrences } from '../../src/ui/highlight';
import { linePlotSvg, linearScale } from '../../src/ui/plot';
import { describeProgress, formatDuration, ProgressMeter } from '../../src/ui/progress';

describe('ProgressMeter', () => {
  it('derives rate and ETA from elapsed time', () => {
    let now = 1000;
    const meter = new ProgressMeter(() => now);
    expect(meter.estimate(0, 100)).toEqual({ done: 0, total: 100, fraction: 0 });
    now += 2000;
    const est = meter.estimate(40, 100);
    expect(est.rate).toBeCloseTo(20);
    expect(est.etaSeconds).toBeCloseTo(3);
    expect(describeProgress(est, 'passages')).toBe('40 / 100 · 20 passages/s · 3 s left');
    expect(describeProgress(meter.estimate(100, 100), 'passages')).toBe('100 / 100 · 50 passages/s');
  });

  it('formats durations for people', () => {
    expect(formatDuration(4.4)).toBe('4 s');
    expect(formatDuration(125)).toBe('2 min 5 s');
    expect(formatDuration(3 * 3600 + 60)).toBe('3 h 1 min');
    expect(formatDuration(Infinity)).toBe('—');
  });
});

describe('highlightOccurrences', () => {
  it('marks every case-insensitive whole-word occurrence and keeps the original text', () => {
    const segs = highlightOccurrences('Paris is big. I love PARIS, not Parisian bread.', 'paris');
    expect(segs.filter((s) => s.match).map((s) => s.text)).toEqual(['Paris', 'PARIS']);
    expect(segs.map((s) => s.text).join('')).toBe('Paris is big. I love PARIS, not Parisian bread.');
  });

  it('matches multi-word answers across any whitespace and escapes regex characters', () => {
    expect(
      highlightOccurrences('founded in\n1842 (c.)', 'in 1842')
        .filter((s) => s.match)
        .map((s) => s.text),
    ).toEqual(['in\n1842']);
    expect(highlightOccurrences('cost $5.00 (approx.)', '$5.00').filter((s) => s.match)).toHaveLength(1);
    expect(highlightOccurrences('nothing here', '')).toEqual([{ text: 'nothing here', match: false }]);
    expect(highlightOccurrences('nothing here', 'absent')).toEqual([{ text: 'nothing here', match: false }]);
  });
});

describe('linePlotSvg', () => {
  it('maps data to pixels with the first point at the left edge and the highest y at the top', () => {
    const scale = linearScale([0, 10], [48, 468]);
    expect(scale(0)).toBe(48);
    expect(scale(10)).toBe(468);
    const svg = linePlotSvg(
      [
        { x: 1, y: 0.5 },
        { x: 2, y: 1 },
      ],
      { title: 'EM <per> round', yRange: [0, 1], width: 480, height: 200, dots: true },
    );
    // y=1 maps to the top padding (12), y=0.5 halfway down the plot area (12 + 154/2).
    expect(svg).toContain('d="M48.0,89.0L468.0,12.0"');
    expect(svg.match(/<circle/g)).toHaveLength(2);
    expect(svg).toContain('aria-label="EM &#60;per&#62; round"');
  });

  it('skips non-finite points and says when there is no data', () => {
    expect(linePlotSvg([{ x: 1, y: NaN }], { title: 't' })).toContain('no data yet');
    expect(linePlotSvg([], { title: 't' })).not.toContain('<path');
  });
});
