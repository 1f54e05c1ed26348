/** The report writers: summary over seeds, markdown tables in the paper's layout, SVG plots. */
import { describe, expect, it } from 'vitest';
import { lineChartSvg, niceStep } from '../../src/crab/plot';
import { markdownReport, plotFiles, summarize } from '../../src/crab/report';
import { aggregateScores, bestNllRound, bestRound, type ExperimentResult, type RoundScore } from '../../src/crab/runner';
import { parseRunnerConfig } from '../../src/crab/runner-config';

/** A round from per-client [EM, F1, answers, gold-answer NLL]. */
function round(round: number, perClient: Array<[number, number, number, number?]>): RoundScore {
  const scores = perClient.map(([exactMatch, f1, count, answerNll = 5]) => ({ exactMatch, f1, count, answerNll, answerTokens: 3 * count }));
  return { round, ...aggregateScores(scores, 'client-average'), perClient: scores, trainLoss: round ? 1 : null };
}

function finished(spec: Pick<ExperimentResult, 'method' | 'shots' | 'seed'>, rounds: RoundScore[]): ExperimentResult {
  return { ...spec, store: 'REL', aggregation: 'client-average', rounds, best: bestRound(rounds), bestNll: bestNllRound(rounds), globalVersions: null, trainingStoreSizes: [1], seconds: 1 };
}

describe('summary over seeds', () => {
  const experiment = (method: ExperimentResult['method'], seed: number, em: number[], nll: number[] = em.map(() => 5)): ExperimentResult =>
    finished({ method, shots: 16, seed }, em.map((x, r) => round(r, [[x, Math.min(1, x + 0.1), 4, nll[r]]])));

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
    expect(md).toContain('| 2, 1 | 5.000 ± 0.000 | 5.000 ± 0.000 | +0.000 | 1, 1 | 1.00 → 1.00 |');
    expect(md).toMatch(/\| REL \| 50\.0 ± 14\.1 \| 5\.000 ± 0\.000 \| every client/);
    expect(md).toMatch(/\| IRR \| – \| – \|/);
  });
});

describe('test gold-answer NLL in the summary and the report', () => {
  it('takes the lowest trained-round NLL (independently of the best-EM round) and shows it beside round 0', () => {
    // EM is 0 everywhere; only the NLL shows that training changed anything.
    const corag = [finished({ method: 'corag', shots: 16, seed: 0 }, [0, 0, 0].map((em, r) => round(r, [[em, 0, 4, [10.5, 10.25, 10.0][r]], [em, 0, 4, [10.5, 10.25, 10.5][r]]])))];
    const local = [finished({ method: 'rag-local', shots: 16, seed: 0 }, [0, 0, 0].map((em, r) => round(r, [[em, 0, 4, [10.5, 10.75, 11][r]]])))];
    const summary = summarize([...corag, ...local]);
    expect(summary[0].answerNllByRound).toEqual([10.5, 10.25, 10.25]);
    expect(summary[0].answerNll.mean).toBe(10.25);
    expect(summary[0].bestNllRounds).toEqual([1]);
    expect(summary[0].roundZeroAnswerNll.mean).toBe(10.5);
    // Rag-local never went below round 0: its best trained round is still worse.
    expect(summary[1].answerNll.mean).toBe(10.75);
    expect(corag[0].rounds[1].perplexity).toBeCloseTo(Math.exp(10.25), 6);

    const config = parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, shots: [16], methods: ['rag-local', 'corag'], rounds: 2 });
    const md = markdownReport({ format: 'crab-results/1', name: 'x', config, backend: 'cpu', startedAt: '', seconds: 60, data: { cache: '' }, experiments: [], summary });
    expect(md).toContain('Test gold-answer NLL');
    expect(md).toContain('| CoRAG | 10.250 |');
    expect(md).toContain('| RAG-Local | 10.750 |');
    expect(md).toContain('| 10.500 | 10.250 | -0.250 | 1 |');
    expect(md).toContain('| 10.500 | 10.750 | +0.250 | 1 |');

    const plot = plotFiles({ config, summary }).find((f) => f.name === 'nll-vs-round-16shot.svg');
    expect(plot).toBeDefined();
    expect(plot!.text).toContain('data-x="1" data-y="10.25"');
    expect(plot!.text).toContain('data-x="1" data-y="10.75"');
  });

  it('renders results written before the NLL existed, with "–" and without NLL plots', () => {
    const old = finished({ method: 'corag', shots: 16, seed: 0 }, [round(0, [[0, 0, 4]]), round(1, [[0.5, 0.5, 4]])]);
    const legacy = { ...old, bestNll: undefined, rounds: old.rounds.map(({ answerNll: _, perplexity: __, ...r }) => r) } as unknown as ExperimentResult;
    const summary = summarize([legacy]);
    const config = parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, shots: [16], methods: ['corag'], rounds: 1 });
    const md = markdownReport({ format: 'crab-results/1', name: 'x', config, backend: 'cpu', startedAt: '', seconds: 60, data: { cache: '' }, experiments: [], summary });
    expect(md).toContain('| CoRAG | – |');
    expect(plotFiles({ config, summary }).map((f) => f.name)).toEqual(['em-vs-round-16shot.svg', 'em-vs-shots.svg']);
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

  it('fits the y axis to the data when asked (a loss moving by tenths is not a flat line)', () => {
    const svg = lineChartSvg({ title: 'NLL', xLabel: 'round', yLabel: 'NLL', fitY: true, series: [{ name: 'A', points: [{ x: 0, y: 10.4 }, { x: 1, y: 10.0 }] }] });
    // Step 0.1 over 10.0..10.4: 10.4 at the top (y 40), 10.0 at the bottom (y 308).
    expect(svg).toContain('cy="40.0" r="3.5" fill="#0072B2" data-x="0" data-y="10.4"');
    expect(svg).toContain('cy="308.0" r="3.5" fill="#0072B2" data-x="1" data-y="10"');
    expect(svg).not.toMatch(/class="ytick"[^>]*>0<\/text>/);
    expect(svg).toMatch(/class="ytick"[^>]*>10<\/text>/);
  });

  it('draws EM vs round per shot count and EM vs shots per method from the summary', () => {
    const rounds = (em: number[]) => em.map((x, r) => round(r, [[x, x, 4]]));
    const exp = (method: ExperimentResult['method'], shots: number, em: number[]): ExperimentResult => finished({ method, shots, seed: 0 }, rounds(em));
    const config = parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, shots: [16, 64], methods: ['corag', 'centralized'], rounds: 2 });
    const summary = summarize([exp('corag', 16, [0, 0.25, 0.5]), exp('centralized', 16, [0, 0.5, 0.75]), exp('corag', 64, [0, 0.125, 0.375])]);
    const files = plotFiles({ config, summary });
    expect(files.map((f) => f.name)).toEqual(['em-vs-round-16shot.svg', 'em-vs-round-64shot.svg', 'nll-vs-round-16shot.svg', 'nll-vs-round-64shot.svg', 'em-vs-shots.svg']);
    expect(files[0].text.match(/<g class="series"/g)).toHaveLength(2);
    expect(files[0].text).toContain('data-x="2" data-y="75"');
    expect(files[1].text.match(/<g class="series"/g)).toHaveLength(1);
    const shots = files[4].text;
    expect(shots).toContain('data-name="CoRAG"');
    expect(shots).toContain('data-x="16" data-y="50"');
    expect(shots).toContain('data-x="64" data-y="37.5"');
  });
});
