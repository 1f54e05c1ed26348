/** The report writers: summary over seeds, markdown tables in the paper's layout, SVG plots. */
import { describe, expect, it } from 'vitest';
import { lineChartSvg, niceStep } from '../../src/crab/plot';
import { markdownReport, plotFiles, summarize } from '../../src/crab/report';
import { aggregateScores, bestRound, type ExperimentResult, type RoundScore } from '../../src/crab/runner';
import { parseRunnerConfig } from '../../src/crab/runner-config';

function round(round: number, perClient: Array<[number, number, number]>): RoundScore {
  const scores = perClient.map(([exactMatch, f1, count]) => ({ exactMatch, f1, count }));
  return { round, ...aggregateScores(scores, 'client-average'), perClient: scores, trainLoss: round ? 1 : null };
}

describe('summary over seeds', () => {
  const experiment = (method: ExperimentResult['method'], seed: number, em: number[]): ExperimentResult => {
    const rounds = em.map((x, r) => round(r, [[x, Math.min(1, x + 0.1), 4]]));
    return { method, shots: 16, store: 'REL', seed, aggregation: 'client-average', rounds, best: bestRound(rounds), globalVersions: null, trainingStoreSizes: [1], seconds: 1 };
  };

  it('reports the best-round EM as mean ± sample std and the round-0 score beside it', () => {
    const summary = summarize([experiment('corag', 0, [0, 0.2, 0.4]), experiment('corag', 1, [0, 0.6, 0.5]), experiment('rag-local', 0, [0, 0.1, 0.05])]);
    expect(summary).toHaveLength(2);
    const corag = summary[0];
    expect(corag.seeds).toEqual([0, 1]);
    expect(corag.exactMatch.mean).toBeCloseTo(0.5, 12);
    expect(corag.exactMatch.std).toBeCloseTo(Math.SQRT2 * 0.1, 12);
    expect(corag.bestRounds).toEqual([2, 1]);
    expect(corag.exactMatchByRound.map((x) => Number(x.toFixed(12)))).toEqual([0, 0.4, 0.45]);
    expect(summary[1].exactMatch.std).toBe(0);
    expect(corag.trainLossByRound).toEqual([null, 1, 1]);

    const config = parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, shots: [16], methods: ['rag-local', 'corag'], storeAblation: { shots: 16, stores: ['REL', 'IRR'] } });
    const md = markdownReport({ format: 'crab-results/1', name: 'x', config, backend: 'cpu', startedAt: '', seconds: 60, data: { cache: '' }, experiments: [], summary });
    expect(md).toContain('| CoRAG | 50.0 ± 14.1 |');
    expect(md).toContain('| RAG-Local | 10.0 |');
    expect(md).toContain('| CoRAG | 16 | 0.0 ± 0.0 | 50.0 ± 14.1 | +50.0 |');
    expect(md).toContain('| 2, 1 | 1.00 → 1.00 |');
    expect(md).toMatch(/\| REL \| 50\.0 ± 14\.1 \|/);
    expect(md).toMatch(/\| IRR \| – \|/);
  });
});

describe('SVG plots', () => {
  it('places every point by its value on linear axes with nice ticks', () => {
    expect(niceStep(37)).toBe(10);
    expect(niceStep(0.8)).toBe(0.2);
    const svg = lineChartSvg({ title: 'T <1>', xLabel: 'round', yLabel: 'EM', series: [{ name: 'A', points: [{ x: 0, y: 0 }, { x: 2, y: 40 }] }, { name: 'B', points: [{ x: 1, y: 20, err: 5 }] }] });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('T &lt;1&gt;');
    expect(svg.match(/<g class="series"/g)).toHaveLength(2);
    expect(svg.match(/class="errorbar"/g)).toHaveLength(1);
    // y axis 0..40 over the 268-px plot height (top margin 40): y=40 at the top, y=0 at the bottom.
    expect(svg).toContain('cy="40.0" r="3.5" fill="#0072B2" data-x="2" data-y="40"');
    expect(svg).toContain('cy="308.0" r="3.5" fill="#0072B2" data-x="0" data-y="0"');
    expect(svg).toContain('cy="174.0" r="3.5" fill="#D55E00" data-x="1" data-y="20"');
  });

  it('draws EM vs round per shot count and EM vs shots per method from the summary', () => {
    const rounds = (em: number[]) => em.map((x, r) => round(r, [[x, x, 4]]));
    const exp = (method: ExperimentResult['method'], shots: number, em: number[]): ExperimentResult => {
      const rs = rounds(em);
      return { method, shots, store: 'REL', seed: 0, aggregation: 'client-average', rounds: rs, best: bestRound(rs), globalVersions: null, trainingStoreSizes: [1], seconds: 1 };
    };
    const config = parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, shots: [16, 64], methods: ['corag', 'centralized'], rounds: 2 });
    const summary = summarize([exp('corag', 16, [0, 0.25, 0.5]), exp('centralized', 16, [0, 0.5, 0.75]), exp('corag', 64, [0, 0.125, 0.375])]);
    const files = plotFiles({ config, summary });
    expect(files.map((f) => f.name)).toEqual(['em-vs-round-16shot.svg', 'em-vs-round-64shot.svg', 'em-vs-shots.svg']);
    expect(files[0].text.match(/<g class="series"/g)).toHaveLength(2);
    expect(files[0].text).toContain('data-x="2" data-y="75"');
    expect(files[1].text.match(/<g class="series"/g)).toHaveLength(1);
    const shots = files[2].text;
    expect(shots).toContain('data-name="CoRAG"');
    expect(shots).toContain('data-x="16" data-y="50"');
    expect(shots).toContain('data-x="64" data-y="37.5"');
  });
});
