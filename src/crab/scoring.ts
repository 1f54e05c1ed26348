/**
 * CRAB's tables from per-question predictions alone (issue 18's "sound evaluation"): the same
 * scoring for every method, round selection on dev only, paired-bootstrap CIs for every stated
 * difference, and a verdict word for each of the paper's claims. The runner and
 * scripts/crab-rescore.ts both call `scoreRun`, so a re-score reproduces the report exactly.
 *
 * - Scores: client-averaged (macro: the mean over clients of each client's mean; NLL: of each
 *   client's Σ token NLL / Σ answer tokens) is the main number for every method, micro (every
 *   question once; NLL: every answer token once) the second column.
 * - Selection (per cell and seed, among the trained rounds ≥ 1, on DEV macro scores only):
 *   EM/F1 are reported at the round with the highest dev EM (ties: higher dev F1, then lower dev
 *   NLL, then the earlier round); NLL at the round with the lowest dev NLL (ties: earlier). Test
 *   is also reported at the last round and at round 0.
 * - CIs: src/crab/bootstrap.ts (paired; questions resampled within each (seed, client)).
 */
import { combineVerdicts, pairedBootstrap, verdict, type BootstrapUnit, type ConfidenceInterval, type Verdict } from './bootstrap';
import type { PredictionRow } from './predictions';
import { METHODS, type Method } from './runner-config';
import { TRAINING_STORES, type TrainingStoreName } from './stores';

export const METRICS = ['em', 'f1', 'nll'] as const;
export type Metric = (typeof METRICS)[number];

export interface Scores {
  readonly em: number;
  readonly f1: number;
  /** Mean token NLL (nats) of the gold answers; lower is better. */
  readonly nll: number;
}

export interface CellKey {
  readonly method: Method;
  readonly shots: number;
  readonly store: TrainingStoreName;
}

export interface SeedSelection {
  readonly seed: number;
  /** Dev-selected trained round for EM and F1. */
  readonly emRound: number;
  /** Dev-selected trained round for NLL. */
  readonly nllRound: number;
  readonly lastRound: number;
}

/** Means over seeds of one aggregation's test scores. */
export interface TestScores {
  readonly roundZero: Scores;
  /** EM/F1 at each seed's emRound, NLL at its nllRound. */
  readonly selected: Scores;
  readonly last: Scores;
}

export interface CellSummary extends CellKey {
  readonly seeds: readonly number[];
  readonly selection: readonly SeedSelection[];
  readonly macro: TestScores;
  readonly micro: TestScores;
  /** Standard deviation over seeds of the selected macro scores (0 with one seed). */
  readonly selectedStd: Scores;
  /** Macro scores by round (mean over seeds), round 0 first. */
  readonly testByRound: readonly Scores[];
  readonly devByRound: readonly Scores[];
  /** Test questions per seed (all clients). */
  readonly testQuestions: number;
  /** Dev-selected round minus round 0, macro, paired bootstrap. */
  readonly trainedVsRoundZero: Readonly<Record<Metric, ConfidenceInterval>>;
}

export interface Comparison {
  readonly label: string;
  readonly a: CellKey;
  readonly b: CellKey;
  /** a − b at each one's dev-selected rounds (macro), per metric. */
  readonly difference: Readonly<Record<Metric, ConfidenceInterval>>;
}

export interface ClaimCheck {
  readonly id: string;
  readonly statement: string;
  /** The contrasts behind it (all must hold), each with its CI per metric. */
  readonly parts: ReadonlyArray<{ readonly label: string; readonly difference: Readonly<Record<Metric, ConfidenceInterval>> }>;
  readonly verdicts: Readonly<Record<Metric, Verdict>>;
}

export interface BootstrapSettings {
  readonly replicates: number;
  readonly confidence: number;
  readonly seed: number;
}

export interface CrabSummary {
  readonly format: 'crab-summary/1';
  readonly scoring: string;
  readonly bootstrap: BootstrapSettings & { readonly resampling: string };
  readonly cells: readonly CellSummary[];
  readonly comparisons: readonly Comparison[];
  readonly claims: readonly ClaimCheck[];
}

export const DEFAULT_BOOTSTRAP: BootstrapSettings = { replicates: 2000, confidence: 0.95, seed: 0 };

const cellId = (c: CellKey) => `${c.method}/${c.shots}/${c.store}`;
const unitId = (r: Pick<PredictionRow, 'seed' | 'client' | 'question_id'>) => `${r.seed}/${r.client}/${r.question_id}`;

/** Rows of one (cell, seed, round, split). */
type RoundRows = { dev: PredictionRow[]; test: PredictionRow[] };

class Cell {
  /** seed -> round -> rows */
  readonly bySeed = new Map<number, Map<number, RoundRows>>();
  constructor(readonly key: CellKey) {}

  add(r: PredictionRow): void {
    let rounds = this.bySeed.get(r.seed);
    if (!rounds) this.bySeed.set(r.seed, (rounds = new Map()));
    let rows = rounds.get(r.round);
    if (!rows) rounds.set(r.round, (rows = { dev: [], test: [] }));
    rows[r.split].push(r);
  }

  rows(seed: number, round: number, split: 'dev' | 'test'): PredictionRow[] {
    return this.bySeed.get(seed)?.get(round)?.[split] ?? [];
  }

  rounds(seed: number): number[] {
    return [...(this.bySeed.get(seed)?.keys() ?? [])].sort((a, b) => a - b);
  }
}

const value = (r: PredictionRow, m: Metric): [number, number] => (m === 'nll' ? [r.nll_sum, r.nll_tokens] : [m === 'em' ? r.em : r.f1, 1]);

/** Macro or micro scores of a set of rows (one seed). */
export function scoreRows(rows: readonly PredictionRow[], aggregation: 'macro' | 'micro'): Scores {
  const out = (m: Metric) => {
    if (rows.length === 0) return NaN;
    if (aggregation === 'micro') {
      let num = 0;
      let den = 0;
      for (const r of rows) {
        const [a, b] = value(r, m);
        num += a;
        den += b;
      }
      return num / den;
    }
    const byClient = new Map<number, [number, number]>();
    for (const r of rows) {
      const acc = byClient.get(r.client) ?? [0, 0];
      const [a, b] = value(r, m);
      byClient.set(r.client, [acc[0] + a, acc[1] + b]);
    }
    let sum = 0;
    for (const [a, b] of byClient.values()) sum += a / b;
    return sum / byClient.size;
  };
  return { em: out('em'), f1: out('f1'), nll: out('nll') };
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: readonly number[]) => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};

/** The dev-selected trained rounds of one seed (see the file comment for the rules). */
export function selectRounds(devByRound: ReadonlyMap<number, Scores>): Omit<SeedSelection, 'seed'> {
  const trained = [...devByRound.entries()].filter(([r]) => r >= 1).sort((a, b) => a[0] - b[0]);
  if (trained.length === 0) throw new Error('selectRounds: no trained round with dev predictions');
  let em = trained[0];
  let nll = trained[0];
  for (const cand of trained.slice(1)) {
    const [, s] = cand;
    const [, b] = em;
    if (s.em > b.em || (s.em === b.em && (s.f1 > b.f1 || (s.f1 === b.f1 && s.nll < b.nll)))) em = cand;
    if (s.nll < nll[1].nll) nll = cand;
  }
  return { emRound: em[0], nllRound: nll[0], lastRound: trained[trained.length - 1][0] };
}

/** Where a metric's arm sits for a cell and seed. */
type RoundOf = (s: SeedSelection, m: Metric) => number;
const SELECTED: RoundOf = (s, m) => (m === 'nll' ? s.nllRound : s.emRound);
const ROUND_ZERO: RoundOf = () => 0;

interface Arm {
  readonly cell: Cell;
  readonly selection: ReadonlyMap<number, SeedSelection>;
  readonly round: RoundOf;
}

/** Paired bootstrap of Σ weight · arm over the test questions every arm answered (all seeds the arms share). */
function contrast(arms: readonly Arm[], weights: readonly number[], m: Metric, settings: BootstrapSettings): ConfidenceInterval {
  const seeds = [...arms[0].selection.keys()].filter((s) => arms.every((a) => a.selection.has(s)));
  const units: BootstrapUnit[] = [];
  for (const seed of seeds) {
    const maps = arms.map((a) => new Map(a.cell.rows(seed, a.round(a.selection.get(seed)!, m), 'test').map((r) => [unitId(r), r])));
    for (const [id, first] of maps[0]) {
      if (!maps.every((mp) => mp.has(id))) continue;
      units.push({ seed, client: first.client, arms: maps.map((mp) => value(mp.get(id)!, m)) });
    }
  }
  return pairedBootstrap(units, { weights, aggregation: 'macro', ...settings });
}

function perMetric(f: (m: Metric) => ConfidenceInterval): Record<Metric, ConfidenceInterval> {
  return { em: f('em'), f1: f('f1'), nll: f('nll') };
}

/** Lower NLL is better: a claim "a better than b" wants a − b > 0 for EM/F1, < 0 for NLL. */
const direction = (m: Metric): 1 | -1 => (m === 'nll' ? -1 : 1);

/** Scores a run's predictions: cells, comparisons and claims (see the file comment). */
export function scoreRun(rows: readonly PredictionRow[], settings: BootstrapSettings = DEFAULT_BOOTSTRAP): CrabSummary {
  const cells = new Map<string, Cell>();
  for (const r of rows) {
    const key = cellId(r);
    let c = cells.get(key);
    if (!c) cells.set(key, (c = new Cell({ method: r.method, shots: r.shots, store: r.store })));
    c.add(r);
  }
  // Cells in the paper's order: store, shots, method.
  const ordered = [...cells.values()].sort(
    (a, b) =>
      TRAINING_STORES.indexOf(a.key.store) - TRAINING_STORES.indexOf(b.key.store) ||
      a.key.shots - b.key.shots ||
      METHODS.indexOf(a.key.method) - METHODS.indexOf(b.key.method),
  );
  const selections = new Map<string, Map<number, SeedSelection>>();
  const summaries: CellSummary[] = [];
  for (const cell of ordered) {
    const seeds = [...cell.bySeed.keys()].sort((a, b) => a - b);
    const sel = new Map<number, SeedSelection>();
    for (const seed of seeds) {
      const dev = new Map(
        cell
          .rounds(seed)
          .map((r) => [r, scoreRows(cell.rows(seed, r, 'dev'), 'macro')] as const)
          .filter(([, s]) => !Number.isNaN(s.em)),
      );
      sel.set(seed, { seed, ...selectRounds(dev) });
    }
    selections.set(cellId(cell.key), sel);
    const at = (aggregation: 'macro' | 'micro', round: RoundOf): Scores => {
      const per = seeds.map((seed) => {
        const s = sel.get(seed)!;
        const em = scoreRows(cell.rows(seed, round(s, 'em'), 'test'), aggregation);
        const nll = scoreRows(cell.rows(seed, round(s, 'nll'), 'test'), aggregation);
        return { em: em.em, f1: em.f1, nll: nll.nll };
      });
      return { em: mean(per.map((p) => p.em)), f1: mean(per.map((p) => p.f1)), nll: mean(per.map((p) => p.nll)) };
    };
    const last: RoundOf = (s) => s.lastRound;
    const test = (aggregation: 'macro' | 'micro'): TestScores => ({
      roundZero: at(aggregation, ROUND_ZERO),
      selected: at(aggregation, SELECTED),
      last: at(aggregation, last),
    });
    const selectedPerSeed = seeds.map((seed) => {
      const s = sel.get(seed)!;
      return { em: scoreRows(cell.rows(seed, s.emRound, 'test'), 'macro'), nll: scoreRows(cell.rows(seed, s.nllRound, 'test'), 'macro') };
    });
    const roundCount = Math.min(...seeds.map((seed) => cell.rounds(seed).length));
    const byRound = (split: 'dev' | 'test') =>
      Array.from({ length: roundCount }, (_, r) => {
        const per = seeds.map((seed) => scoreRows(cell.rows(seed, r, split), 'macro'));
        return { em: mean(per.map((p) => p.em)), f1: mean(per.map((p) => p.f1)), nll: mean(per.map((p) => p.nll)) };
      });
    const self = (round: RoundOf): Arm => ({ cell, selection: sel, round });
    summaries.push({
      ...cell.key,
      seeds,
      selection: seeds.map((s) => sel.get(s)!),
      macro: test('macro'),
      micro: test('micro'),
      selectedStd: {
        em: std(selectedPerSeed.map((p) => p.em.em)),
        f1: std(selectedPerSeed.map((p) => p.em.f1)),
        nll: std(selectedPerSeed.map((p) => p.nll.nll)),
      },
      testByRound: byRound('test'),
      devByRound: byRound('dev'),
      testQuestions: cell.rows(seeds[0], 0, 'test').length,
      trainedVsRoundZero: perMetric((m) => contrast([self(SELECTED), self(ROUND_ZERO)], [1, -1], m, settings)),
    });
  }

  const arm = (key: CellKey): Arm | null => {
    const cell = cells.get(cellId(key));
    return cell ? { cell, selection: selections.get(cellId(key))!, round: SELECTED } : null;
  };
  const difference = (a: CellKey, b: CellKey) => {
    const x = arm(a);
    const y = arm(b);
    return x && y ? perMetric((m) => contrast([x, y], [1, -1], m, settings)) : null;
  };
  const label = (k: CellKey) => `${k.method} ${k.shots}-shot ${k.store}`;

  const comparisons: Comparison[] = [];
  const storesShots = [...new Set(ordered.map((c) => `${c.key.store}|${c.key.shots}`))];
  for (const ss of storesShots) {
    const [store, shotsText] = ss.split('|') as [TrainingStoreName, string];
    const shots = Number(shotsText);
    const corag: CellKey = { method: 'corag', shots, store };
    for (const other of ['rag-local', 'centralized', 'closed-book'] as const) {
      const b: CellKey = { method: other, shots, store };
      const d = difference(corag, b);
      if (d)
        comparisons.push({
          label: `CoRAG − ${other === 'rag-local' ? 'RAG-Local' : other === 'centralized' ? 'Centralized' : 'Closed-book'}`,
          a: corag,
          b,
          difference: d,
        });
    }
  }

  const claims: ClaimCheck[] = [];
  const claim = (id: string, statement: string, parts: Array<{ label: string; arms: CellKey[]; weights: number[] }>) => {
    const armsOf = parts.map((p) => p.arms.map(arm));
    if (parts.length === 0 || armsOf.some((as) => as.some((a) => a === null))) return;
    const built = parts.map((p, i) => ({ label: p.label, difference: perMetric((m) => contrast(armsOf[i] as Arm[], p.weights, m, settings)) }));
    const verdicts = { em: 'undecided', f1: 'undecided', nll: 'undecided' } as Record<Metric, Verdict>;
    for (const m of METRICS) verdicts[m] = combineVerdicts(built.map((b) => verdict(b.difference[m], direction(m))));
    claims.push({ id, statement, parts: built, verdicts });
  };
  const has = (k: CellKey) => cells.has(cellId(k));
  const mainStore: TrainingStoreName = [...cells.values()].some((c) => c.key.store === 'REL' && c.key.method === 'corag')
    ? 'REL'
    : (ordered.find((c) => c.key.method === 'corag')?.key.store ?? 'REL');
  const shotsOf = (store: TrainingStoreName, method: Method) =>
    [...new Set(ordered.filter((c) => c.key.store === store && c.key.method === method).map((c) => c.key.shots))].sort((a, b) => a - b);
  const coragShots = shotsOf(mainStore, 'corag');
  for (const shots of coragShots) {
    const c: CellKey = { method: 'corag', shots, store: mainStore };
    const l: CellKey = { method: 'rag-local', shots, store: mainStore };
    if (has(l))
      claim(`corag>rag-local@${shots}`, `CoRAG beats RAG-Local at ${shots} shots (${mainStore})`, [
        { label: `${label(c)} − ${label(l)}`, arms: [c, l], weights: [1, -1] },
      ]);
  }
  const both = coragShots.filter((s) => has({ method: 'rag-local', shots: s, store: mainStore }));
  if (both.length > 1) {
    const first = both[0];
    const gap = (s: number): CellKey[] => [
      { method: 'corag', shots: s, store: mainStore },
      { method: 'rag-local', shots: s, store: mainStore },
    ];
    claim(
      `gap-largest@${first}`,
      `CoRAG's gain over RAG-Local is largest at ${first} shots`,
      both.slice(1).map((s) => ({
        label: `(CoRAG − RAG-Local) at ${first} minus at ${s} shots`,
        arms: [...gap(first), ...gap(s)],
        weights: [1, -1, -1, 1],
      })),
    );
  }
  for (const shots of coragShots) {
    const c: CellKey = { method: 'corag', shots, store: mainStore };
    const z: CellKey = { method: 'centralized', shots, store: mainStore };
    if (has(z))
      claim(`centralized>=corag@${shots}`, `Centralized is at least as good as CoRAG at ${shots} shots (an upper bound; supported only if strictly better)`, [
        { label: `${label(z)} − ${label(c)}`, arms: [z, c], weights: [1, -1] },
      ]);
  }
  for (const method of ['corag', 'rag-local'] as const) {
    const shotsList = [...new Set(ordered.filter((c) => c.key.method === method && c.key.store === 'REL+IRR').map((c) => c.key.shots))];
    for (const shots of shotsList) {
      const k = (store: TrainingStoreName): CellKey => ({ method, shots, store });
      claim(
        `store-order/${method}@${shots}`,
        `${method === 'corag' ? 'CoRAG' : 'RAG-Local'} at ${shots} shots: REL+IRR > REL > REL+HARD (irrelevant passages help, hard negatives hurt)`,
        [
          { label: `${label(k('REL+IRR'))} − ${label(k('REL'))}`, arms: [k('REL+IRR'), k('REL')], weights: [1, -1] },
          { label: `${label(k('REL'))} − ${label(k('REL+HARD'))}`, arms: [k('REL'), k('REL+HARD')], weights: [1, -1] },
        ],
      );
    }
  }
  for (const store of ['SPLIT', 'REL-1'] as const) {
    for (const shots of shotsOf(store, 'corag')) {
      const c: CellKey = { method: 'corag', shots, store };
      const l: CellKey = { method: 'rag-local', shots, store };
      const why = store === 'SPLIT' ? 'each client holds only its own relevant passages' : 'one client holds every relevant passage';
      claim(`corag>rag-local/${store}@${shots}`, `CoRAG beats RAG-Local on ${store} at ${shots} shots (${why})`, [
        { label: `${label(c)} − ${label(l)}`, arms: [c, l], weights: [1, -1] },
      ]);
    }
  }
  return {
    format: 'crab-summary/1',
    scoring:
      'test scores client-averaged (macro) as the main number, micro beside it; EM/F1 at the trained round with the best dev EM (ties: dev F1, dev NLL, earlier), NLL at the trained round with the lowest dev NLL; mean over seeds',
    bootstrap: {
      replicates: settings.replicates,
      confidence: settings.confidence,
      seed: settings.seed,
      resampling:
        "paired percentile bootstrap over test questions: in every replicate each (seed, client) stratum's questions are drawn with replacement, the same draw for every arm; the statistic is the mean over seeds of the client-averaged difference",
    },
    cells: summaries,
    comparisons,
    claims,
  };
}
