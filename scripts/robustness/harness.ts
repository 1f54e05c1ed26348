/**
 * Real federated rounds over HTTP against a running coordinator, with honest participants that
 * train a tiny linear-regression task and hostile ones that send an Attack instead. Shared by the
 * attack suite (test/server/attacks.test.ts) and scripts/robustness-table.ts so both measure the
 * same thing.
 *
 * The task: every trained tensor W [r, c] of the tiny model is a linear map with a known optimum
 * W*; participant i holds m samples x ~ U(-1,1)^c with y = W*_i x + noise, where W*_i = W* plus a
 * small participant-specific shift (non-IID). Local training is a few full-batch gradient steps on
 * the mean squared error; the delta is W_local − W. The model's loss is the held-out MSE against W*.
 */
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { QUERY_ENCODER_WIRE_PREFIX, READER_WIRE_PREFIX, type RoundInfo } from '../../src/federated/protocol';
import { seededRandom } from '../../src/util/random';
import type { Attack, Deltas } from './attacks';

export const TINY_MODEL: ReadonlyArray<[string, number[]]> = [
  ['reader.encoder.block.0.layer.0.SelfAttention.q.weight', [16, 16]],
  ['reader.shared.weight', [50, 16]],
  ['query_encoder.embeddings.word_embeddings.weight', [40, 8]],
  ['passage_encoder.embeddings.word_embeddings.weight', [40, 8]],
];
export const TRAINED = [READER_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX];
const trained = TINY_MODEL.filter(([n]) => TRAINED.some((p) => n.startsWith(p)));

export const TASK = { samples: 24, localSteps: 5, learningRate: 0.8, shift: 0.3, noise: 0.05 } as const;

interface ClientData {
  /** per tensor: X [m, c] and Y [m, r] */
  readonly data: Map<string, { x: Float64Array; y: Float64Array; r: number; c: number }>;
}

function uniform(random: () => number, n: number, scale: number): Float64Array {
  return Float64Array.from({ length: n }, () => (random() * 2 - 1) * scale);
}

/** The regression task for `clients` participants (and a held-out set), seeded. */
export class RegressionTask {
  readonly optimum = new Map<string, Float64Array>();
  readonly clients: ClientData[] = [];
  readonly heldOut: ClientData;

  constructor(
    readonly seed: number,
    clients: number,
  ) {
    const random = seededRandom(seed);
    for (const [name, [r, c]] of trained) this.optimum.set(name, uniform(random, r * c, 1));
    const make = (shift: number): ClientData => {
      const data = new Map<string, { x: Float64Array; y: Float64Array; r: number; c: number }>();
      for (const [name, [r, c]] of trained) {
        const w = this.optimum.get(name)!.map((v) => v + (random() * 2 - 1) * shift);
        const x = uniform(random, TASK.samples * c, 1);
        const y = new Float64Array(TASK.samples * r);
        for (let s = 0; s < TASK.samples; s++)
          for (let i = 0; i < r; i++) {
            let v = 0;
            for (let j = 0; j < c; j++) v += w[i * c + j] * x[s * c + j];
            y[s * r + i] = v + (random() * 2 - 1) * TASK.noise;
          }
        data.set(name, { x, y, r, c });
      }
      return { data };
    };
    for (let i = 0; i < clients; i++) this.clients.push(make(TASK.shift));
    this.heldOut = make(0);
  }

  /** The initial global model: trained tensors far from the optimum, the frozen one random. */
  initialModel(): Map<string, NamedTensor> {
    const random = seededRandom(this.seed + 1);
    return new Map(TINY_MODEL.map(([name, shape]) => [name, { shape, data: Float32Array.from(uniform(random, shape[0] * shape[1], 1)) }]));
  }

  /** Client i's delta after local gradient steps from `model`. */
  train(i: number, model: ReadonlyMap<string, NamedTensor>): Deltas {
    const out: Deltas = new Map();
    for (const [name, d] of this.clients[i].data) {
      const start = model.get(name)!.data;
      const w = Float64Array.from(start);
      for (let step = 0; step < TASK.localSteps; step++) {
        const grad = new Float64Array(w.length);
        for (let s = 0; s < TASK.samples; s++)
          for (let a = 0; a < d.r; a++) {
            let err = -d.y[s * d.r + a];
            for (let b = 0; b < d.c; b++) err += w[a * d.c + b] * d.x[s * d.c + b];
            for (let b = 0; b < d.c; b++) grad[a * d.c + b] += (err * d.x[s * d.c + b]) / TASK.samples;
          }
        for (let k = 0; k < w.length; k++) w[k] -= TASK.learningRate * grad[k];
      }
      out.set(name, { shape: model.get(name)!.shape, data: Float32Array.from(w, (v, k) => v - start[k]) });
    }
    return out;
  }

  /** Held-out mean squared error of `model` (mean over trained tensors and outputs). */
  loss(model: ReadonlyMap<string, NamedTensor>): number {
    let total = 0;
    let count = 0;
    for (const [name, d] of this.heldOut.data) {
      const w = model.get(name)!.data;
      for (let s = 0; s < TASK.samples; s++)
        for (let a = 0; a < d.r; a++) {
          let err = -d.y[s * d.r + a];
          for (let b = 0; b < d.c; b++) err += w[a * d.c + b] * d.x[s * d.c + b];
          total += Number.isFinite(err) ? err * err : Infinity;
          count++;
        }
    }
    return total / count;
  }
}

export interface ScenarioResult {
  /** Per round: ‖published − honest-only FedAvg from the same base‖ / ‖honest-only FedAvg − base‖. */
  readonly relativeDistance: number[];
  readonly finalLoss: number;
  /** Every HTTP status the coordinator answered an upload or close with. */
  readonly statuses: number[];
  /** Refused hostile uploads whose round (as the admin sees it) was the same before and after. */
  readonly refusedUnchanged: number;
  readonly refused: number;
  readonly rounds: RoundInfo[];
  readonly publishedFinite: boolean;
}

function distance(a: ReadonlyMap<string, ArrayLike<number>>, b: ReadonlyMap<string, ArrayLike<number>>): number {
  let s = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) s += (x[i] - y[i]) ** 2;
  }
  return Math.sqrt(s);
}

/**
 * One session on the coordinator at `url`: `participants` clients of which the first `hostile`
 * send `attack`, `rounds` rounds, aggregated by `strategy`.
 */
export async function runScenario(
  url: string,
  options: {
    strategy: string;
    strategyParams?: Record<string, number>;
    participants: number;
    hostile: number;
    attack: Attack;
    rounds: number;
    seed: number;
  },
): Promise<ScenarioResult> {
  const { participants, hostile, attack } = options;
  const task = new RegressionTask(options.seed, participants);
  const anon = new CoragClient(url);
  const created = await anon.createSession({
    name: `attack ${attack.name} ${options.strategy}`,
    models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
    training: { localSteps: TASK.localSteps, batchSize: TASK.samples },
    roundPolicy: { minClients: participants, minUpdates: 1, deadlineSeconds: 600 },
    trainedPrefixes: TRAINED,
    strategy: options.strategy,
    strategyParams: options.strategyParams,
  });
  const sid = created.session.id;
  const admin = anon.withToken(created.adminToken);
  await admin.uploadModel(sid, encodeModel(task.initialModel()));
  const clients = [];
  for (let i = 0; i < participants; i++) clients.push(anon.withToken((await anon.join(created.joinCode, `c${i}`)).token));

  const statuses: number[] = [];
  const relativeDistance: number[] = [];
  const rounds: RoundInfo[] = [];
  let refused = 0;
  let refusedUnchanged = 0;
  let publishedFinite = true;
  const send = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
      statuses.push(200);
      return 200;
    } catch (e) {
      const status = e instanceof CoragHttpError ? e.status : 0;
      statuses.push(status);
      return status;
    }
  };
  let model = decodeModel(await admin.downloadModel(sid, 0));
  for (let r = 1; r <= options.rounds; r++) {
    const round = await admin.openRound(sid);
    const base = decodeModel(await admin.downloadModel(sid, round.baseVersion));
    const honestExamples = TASK.samples;
    const deltas = clients.map((_, i) => task.train(i, base));
    // The honest participants' deltas (everyone's when the "attack" is none).
    const honest = attack.name === 'none' ? deltas : deltas.slice(hostile);
    for (let i = 0; i < participants; i++) {
      const own = deltas[i];
      const update = i < hostile ? attack.craft({ own, honest, base, participants, honestExamples }) : { deltas: own, numExamples: honestExamples };
      const body = encodeUpdate(update.deltas, { round: r, baseVersion: round.baseVersion, numExamples: update.numExamples, metrics: { loss: 1 } });
      // The round as the admin sees it before a hostile upload, to check a refusal changed nothing.
      const before = i < hostile ? JSON.stringify(await admin.round(sid, r)) : undefined;
      const status = await send(clients[i].uploadUpdate(sid, r, body));
      if (status !== 200) {
        if (before === undefined) throw new Error(`honest participant ${i} was refused (${status}) with ${attack.name} / ${options.strategy}`);
        refused++;
        if (JSON.stringify(await admin.round(sid, r)) === before) refusedUnchanged++;
      }
    }
    let info = await admin.round(sid, r);
    for (let t = 0; (info.state === 'open' || info.state === 'closing') && info.accepted === participants && t < 200; t++) {
      await new Promise((res) => setTimeout(res, 10));
      info = await admin.round(sid, r);
    }
    if (info.state === 'open') {
      try {
        info = await admin.closeRound(sid, r);
        statuses.push(200);
      } catch (e) {
        statuses.push(e instanceof CoragHttpError ? e.status : 0);
        info = await admin.round(sid, r);
      }
    }
    rounds.push(info);
    const published = decodeModel(await admin.downloadModel(sid, (await admin.session(sid)).currentVersion!));
    publishedFinite &&= [...published.values()].every((t) => t.data.every(Number.isFinite));
    // Honest-only FedAvg from the same base, in float64.
    const expected = new Map<string, Float64Array>();
    const baseline = new Map<string, Float64Array>();
    for (const [name] of trained) {
      const b = base.get(name)!.data;
      const e = Float64Array.from(b);
      for (const d of honest) {
        const x = d.get(name)!.data;
        for (let k = 0; k < e.length; k++) e[k] += x[k] / honest.length;
      }
      expected.set(name, e);
      baseline.set(name, Float64Array.from(b));
    }
    const got = new Map([...trained].map(([name]) => [name, published.get(name)!.data]));
    relativeDistance.push(distance(got, expected) / distance(expected, baseline));
    model = published;
  }
  return { relativeDistance, finalLoss: task.loss(model), statuses, refused, refusedUnchanged, rounds, publishedFinite };
}
