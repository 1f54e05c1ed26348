/** The report writers: tables with CIs and verdicts from predictions, results files, SVG plots. */
import { describe, expect, it } from 'vitest';
import { lineChartSvg, niceStep } from '../../src/crab/plot';
import { parsePredictionsJsonl, type PredictionRow } from '../../src/crab/predictions';
import { formatInterval, markdownReport, plotFiles, reportFiles, summaryMarkdown, type CrabResults } from '../../src/crab/report';
import { parseRunnerConfig } from '../../src/crab/runner-config';
import { scoreRun } from '../../src/crab/scoring';

/** CoRAG right on `right` of 4 test questions per client after round 1; RAG-Local never; 2 clients, 1 round, given seeds. */
function predictions(seeds: number[], right: number): PredictionRow[] {
  const out: PredictionRow[] = [];
  for (const seed of seeds)
    for (const method of ['rag-local', 'corag'] as const)
      for (const round of [0, 1])
        for (const split of ['test', 'dev'] as const)
          for (const client of [0, 1]) {
            for (let q = 0; q < (split === 'test' ? 4 : 2); q++) {
              const em = method === 'corag' && round === 1 && split === 'test' && q < right ? 1 : 0;
              out.push({
                method,
                shots: 16,
                store: 'REL',
                seed,
                round,
                split,
                client,
                question_id: `${split}${client}${q}`,
                prediction: em ? 'x' : 'y',
                em,
                f1: em,
                nll_sum: em ? 2 : 8,
                nll_tokens: 2,
              });
            }
          }
  return out;
}

describe('report tables', () => {
  it('formats differences with their interval in points (EM/F1) or nats (NLL)', () => {
    const ci = { estimate: 0.042, low: -0.01, high: 0.08, replicates: 1, confidence: 0.95, units: 1 };
    expect(formatInterval(ci, 'em')).toBe('+4.2 [-1.0, +8.0]');
    expect(formatInterval({ ...ci, estimate: -0.25, low: -0.5, high: -0.125 }, 'nll')).toBe('-0.250 [-0.500, -0.125]');
  });

  it('shows round 0, the dev-selected round (macro ± std, micro), the last round, Δ with CI, and the verdicts', () => {
    const summary = scoreRun(predictions([0, 1, 2], 2), { replicates: 300, confidence: 0.95, seed: 0 });
    const md = summaryMarkdown(summary);
    // CoRAG: 2 of 4 right on each client after round 1 = 50 %; every question moves from 0, so the CI is above 0.
    expect(md).toMatch(/\| CoRAG \| 16 \| REL \| 0\.0 \| 50\.0 ± 0\.0 \| 50\.0 \| 50\.0 \| \+50\.0 \[\+[0-9.]+, \+[0-9.]+\] \| 1, 1, 1 \| 8 × 3 \|/);
    expect(md).toMatch(/\| RAG-Local \| 16 \| REL \| 0\.0 \| 0\.0 ± 0\.0 \| 0\.0 \| 0\.0 \| \+0\.0 \[\+0\.0, \+0\.0\] \|/);
    expect(md).toMatch(/\| CoRAG − RAG-Local \| 16 \| REL \| \+50\.0 \[/);
    expect(md).toMatch(/\| CoRAG beats RAG-Local at 16 shots \(REL\) \| supported \(\+50\.0 \[/);
    // NLL: CoRAG's right answers have NLL 1 vs 4: lower is better, so NLL supports it too.
    expect(md).toMatch(/\| CoRAG beats RAG-Local at 16 shots \(REL\) \| supported .* \| supported .* \| supported \(-1\.500 \[/);
    expect(md).toContain('paired percentile bootstrap');
  });

  it('says undecided when nothing differs', () => {
    const md = summaryMarkdown(scoreRun(predictions([0], 0), { replicates: 100, confidence: 0.95, seed: 0 }));
    expect(md).toMatch(/\| CoRAG beats RAG-Local at 16 shots \(REL\) \| undecided/);
  });

  it('writes results.json without predictions, predictions.jsonl that re-scores to summary.json, results.md and the plots', () => {
    const rows = predictions([0, 1, 2], 1);
    const config = parseRunnerConfig({
      name: 'x',
      models: { reader: 'tiny', retriever: 'tiny' },
      shots: [16],
      methods: ['rag-local', 'corag'],
      seeds: [0, 1, 2],
    });
    const results: CrabResults = {
      format: 'crab-results/2',
      name: 'x',
      config,
      backend: 'cpu',
      startedAt: '',
      seconds: 60,
      data: { cache: '' },
      experiments: [],
      summary: scoreRun(rows),
    };
    const files = new Map(reportFiles(results, rows).map((f) => [f.name, f.text]));
    expect([...files.keys()]).toEqual([
      'results.json',
      'predictions.jsonl',
      'summary.json',
      'results.md',
      'em-vs-round-16shot.svg',
      'nll-vs-round-16shot.svg',
      'em-vs-shots.svg',
    ]);
    expect(files.get('results.json')).not.toContain('question_id');
    expect(files.get('predictions.jsonl')!.trim().split('\n')).toHaveLength(rows.length);
    expect(JSON.stringify(scoreRun(parsePredictionsJsonl(files.get('predictions.jsonl')!)), null, 2) + '\n').toBe(files.get('summary.json'));
    expect(markdownReport(results)).toContain('all test and all dev questions per client; 3 seed(s)');
    const emPlot = plotFiles(results.summary)[0].text;
    expect(emPlot.match(/<g class="series"/g)).toHaveLength(2);
    expect(emPlot).toContain('data-x="1" data-y="25"'); // CoRAG after round 1: 1 of 4 per client
  });
});

describe('SVG plots', () => {
  it('places every point by its value on linear axes with nice ticks', () => {
    expect(niceStep(37)).toBe(10);
    expect(niceStep(0.8)).toBe(0.2);
    const svg = lineChartSvg({
      title: 'T <1>',
      xLabel: 'round',
      yLabel: 'EM',
      series: [
        {
          name: 'A',
          points: [
            { x: 0, y: 0 },
            { x: 2, y: 40 },
          ],
        },
        { name: 'B', points: [{ x: 1, y: 20, err: 5 }] },
      ],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('T &lt;1&gt;');
    expect(svg.match(/<g class="series"/g)).toHaveLength(2);
    expect(svg.match(/class="errorbar"/g)).toHaveLength(1);
    // y axis 0..40 over the 268-px plot height (top margin 40): y=40 at the top, y=0 at the bottom.
    expect(svg).toContain('cy="40.0" r="3.5" fill="#0072B2" data-x="2" data-y="40"');
    expect(svg).toContain('cy="308.0" r="3.5" fill="#0072B2" data-x="0" data-y="0"');
    expect(svg).toContain('cy="174.0" r="3.5" fill="#D55E00" data-x="1" data-y="20"');
  });

  it('fits the y axis to the data when asked (a loss moving by tenths is not a flat line)', () => {
    const svg = lineChartSvg({
      title: 'NLL',
      xLabel: 'round',
      yLabel: 'NLL',
      fitY: true,
      series: [
        {
          name: 'A',
          points: [
            { x: 0, y: 10.4 },
            { x: 1, y: 10.0 },
          ],
        },
      ],
    });
    // Step 0.1 over 10.0..10.4: 10.4 at the top (y 40), 10.0 at the bottom (y 308).
    expect(svg).toContain('cy="40.0" r="3.5" fill="#0072B2" data-x="0" data-y="10.4"');
    expect(svg).toContain('cy="308.0" r="3.5" fill="#0072B2" data-x="1" data-y="10"');
    expect(svg).not.toMatch(/class="ytick"[^>]*>0<\/text>/);
    expect(svg).toMatch(/class="ytick"[^>]*>10<\/text>/);
  });
});
