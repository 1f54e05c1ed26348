/**
 * npx tsx scripts/finetune-curves.ts [--models public/models/demo] [--crab results/cache/crab-mini]
 *   [--shots 64] [--clients 0,1,…] [--lrs 1e-5,1e-4,1e-3] [--retriever-lrs 1e-6,…] [--trainable reader,reader+query-encoder]
 *   [--steps 32] [--eval-every 8] [--batch 4] [--k 4] [--max-length 128] [--dev 64] [--em] [--em-baseline]
 *   [--backend wasm] [--seed 0] [--out results/finetune-curves.json]
 *   [--lora-rank 8] [--lora-alpha 16] [--lora-targets q,v]
 *
 * Why does few-shot fine-tuning of the pretrained pair make it worse (issue 18)? This measures the
 * curves a CRAB round hides: for each (learning rate, trained parts) it fine-tunes the shipped
 * pair on CRAB-mini TRAIN pairs (the clients' k-shot sets pooled, retrieval from the
 * collaborative REL store, exactly trainLocally as a round runs it) and, every `--eval-every`
 * steps, scores
 *   - train NLL: gold-answer token NLL on (up to) 64 of the training pairs — does it fit?
 *   - dev NLL (retrieved): the same on DEV questions with the top-k of a dev store (the test
 *     stores' background slices + the dev questions' relevant passages) — does it generalise?
 *   - dev NLL (gold passage): the reader alone, given the dev question's relevant passage —
 *     separates the reader from the (possibly drifting) query encoder;
 *   - dev R@k: share of dev questions with a relevant passage in the retrieved top-k;
 *   - with `--em`, dev EM/F1 of quoted, reranked answers (the app's decoding) at the last
 *     evaluation, with `--em-baseline` also before training (generation is the expensive part).
 * Choices are made on dev only; nothing here reads a test question. Every configuration starts
 * from the same weights (the bundle is reset from a snapshot). Output: one JSON with every curve.
 *
 * `--trainable lora` trains LoRA adapters on the reader's attention instead (src/model/lora.ts,
 * the session option of issue 20: the reader's frozen weights plus adapters with B = 0, so it
 * starts from the same model); LoRA runs come after the others (the adapters change the model's
 * tensor set, so they get their own snapshot).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate, goldAnswerNll } from '../src/corag/evaluate';
import { trainLocally, type QAPair } from '../src/corag/local-training';
import { ModelBundle } from '../src/corag/model-bundle';
import { retrieve, type PassageText } from '../src/corag/retrieve';
import { clientView, collaborativeView } from '../src/crab/stores';
import { initBackend, parseBackendName } from '../src/model/backend';
import type { TrainableSelection } from '../src/model/trainable';
import { trainableForWirePrefixes, READER_LORA_WIRE_PREFIX } from '../src/corag/model-bundle';
import type { LoraTarget } from '../src/model/lora';
import { readCrabCache } from '../src/platform/node/crab-files';
import { folderModelSource } from '../src/platform/node/folder-source';
import { cachedEmbeddedStore } from '../src/platform/node/crab-embedding-cache';
import { optionValue } from './options';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => optionValue(argv, name, fallback);
const list = (name: string, fallback: string) =>
  opt(name, fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const modelsDir = opt('models', 'public/models/demo');
const crabDir = opt('crab', 'results/cache/crab-mini');
const shots = Number(opt('shots', '64'));
const lrs = list('lrs', '1e-5,1e-4,1e-3').map(Number);
// The query encoder's own rates (Atlas's lr_retriever) when it trains; absent: the reader's.
const retrieverLrs: Array<number | undefined> = opt('retriever-lrs', '') ? list('retriever-lrs', '').map(Number) : [undefined];
const trainables = list('trainable', 'reader,reader+query-encoder');
const loraRank = Number(opt('lora-rank', '8'));
const lora = {
  rank: loraRank,
  alpha: Number(opt('lora-alpha', String(2 * loraRank))),
  targets: list('lora-targets', 'q,v') as LoraTarget[],
  seed: Number(opt('seed', '0')),
};
const steps = Number(opt('steps', '32'));
const evalEvery = Number(opt('eval-every', '8'));
const batchSize = Number(opt('batch', '4'));
const k = Number(opt('k', '4'));
const maxLength = Number(opt('max-length', '128'));
const devLimit = Number(opt('dev', '64'));
const withEm = argv.includes('--em');
const withEmBaseline = argv.includes('--em-baseline');
const seed = Number(opt('seed', '0'));
const outPath = opt('out', 'results/finetune-curves.json');

const backend = await initBackend(parseBackendName(opt('backend', 'wasm')));
const started = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${line}`);

const crab = readCrabCache(crabDir);
const clients = opt('clients', '') ? list('clients', '').map(Number) : crab.splits.clients.map((_, i) => i);
const passageById = new Map(crab.passages.map((p) => [p.id, p]));
const text = (id: string): PassageText => {
  const p = passageById.get(id);
  if (!p) throw new Error(`passage ${id} is not in ${crabDir}`);
  return { title: p.title, text: p.text };
};
const inClients = (c: number) => clients.includes(c);
const train = crab.qa.filter((q) => q.split === 'train' && inClients(q.client) && q.position < shots);
const dev = crab.qa.filter((q) => q.split === 'dev' && inClients(q.client) && q.relevant.length > 0).slice(0, devLimit);
const trainProbe = train.slice(0, 64);
const relLayout = crab.stores.training[String(shots)]?.REL;
if (!relLayout) throw new Error(`${crabDir} has no ${shots}-shot stores`);
const trainStoreIds = [
  ...new Set(clients.length === crab.splits.clients.length ? collaborativeView(relLayout) : clients.flatMap((c) => clientView(relLayout, c))),
];
// CRAB builds no dev store: dev questions retrieve from the test background slices plus their own
// relevant passages (a test store's recipe with dev in place of test; no test-relevant passage).
const testRelevant = new Set(crab.qa.filter((q) => q.split === 'test').flatMap((q) => q.relevant));
const devStoreIds = [...new Set([...dev.flatMap((q) => q.relevant), ...collaborativeView(crab.stores.test).filter((id) => !testRelevant.has(id))])];
log(
  `backend ${backend.name}; ${train.length} train pairs (${shots}-shot, clients ${clients.join(',')}), ${dev.length} dev questions, stores: train ${trainStoreIds.length}, dev ${devStoreIds.length} passages`,
);

const bundle = await ModelBundle.fromCheckpoints({
  reader: folderModelSource(join(modelsDir, 'reader')),
  retriever: folderModelSource(join(modelsDir, 'retriever')),
});
let snapshot = await bundle.exportGlobal();
// The passage encoder is frozen in every configuration: both stores are embedded once and cached
// beside the CRAB cache, so the next run of the grid skips the slowest part.
const embeddedStore = (name: string, ids: readonly string[]) =>
  cachedEmbeddedStore(bundle, { name, ids, text, encoderFile: join(modelsDir, 'retriever', 'model.safetensors'), cacheDir: crabDir });
const trainStore = await embeddedStore('REL', trainStoreIds);
const devStore = await embeddedStore('dev', devStoreIds);
log('stores embedded');

const toPair = (q: { question: string; answers: readonly string[] }): QAPair => ({ question: q.question, answers: q.answers });
const meanNll = (rows: Array<{ sum: number; tokens: number }>) => rows.reduce((a, r) => a + r.sum, 0) / rows.reduce((a, r) => a + r.tokens, 0);

async function nllOver(questions: ReadonlyArray<{ question: string; answers: readonly string[] }>, passagesOf: (i: number) => PassageText[]): Promise<number> {
  const rows: Array<{ sum: number; tokens: number }> = [];
  for (let s = 0; s < questions.length; s += 16) {
    const chunk = questions.slice(s, s + 16);
    rows.push(
      ...(await goldAnswerNll(
        bundle,
        chunk.map((q) => q.question),
        chunk.map((_, i) => passagesOf(s + i)),
        chunk.map((q) => q.answers[0]),
        { maxLength },
      )),
    );
  }
  return meanNll(rows);
}

interface Point {
  step: number;
  trainNll: number;
  devNllRetrieved: number;
  devNllGold: number;
  /** With no passage at all: what the reader knows of the answer from the question alone. */
  devNllClosedBook: number;
  devRecallAtK: number;
  devEm?: number;
  devF1?: number;
  trainLoss?: number;
}

async function measure(step: number, em: boolean, trainLoss?: number): Promise<Point> {
  const trainRetrieved = await retrieve(
    bundle,
    trainStore,
    trainProbe.map((q) => q.question),
    { k },
  );
  const devRetrieved = await retrieve(
    bundle,
    devStore,
    dev.map((q) => q.question),
    { k },
  );
  const point: Point = {
    step,
    trainNll: await nllOver(trainProbe, (i) => trainRetrieved[i]),
    devNllRetrieved: await nllOver(dev, (i) => devRetrieved[i]),
    devNllGold: await nllOver(dev, (i) => [text(dev[i].relevant[0])]),
    devNllClosedBook: await nllOver(dev, () => [{ title: '', text: '' }]),
    devRecallAtK:
      devRetrieved.filter((r, i) => r.some((p) => p.title === text(dev[i].relevant[0]).title && p.text === text(dev[i].relevant[0]).text)).length / dev.length,
    trainLoss,
  };
  if (em) {
    const result = await evaluate(bundle, dev.map(toPair), devStore, { k, maxLength, maxNewTokens: 8, batchSize: 8, extractive: true });
    point.devEm = result.exactMatch;
    point.devF1 = result.f1;
  }
  log(
    `  step ${step}: train NLL ${point.trainNll.toFixed(3)}, dev NLL ${point.devNllRetrieved.toFixed(3)} (gold passage ${point.devNllGold.toFixed(3)}, no passage ${point.devNllClosedBook.toFixed(3)}), dev R@${k} ${(100 * point.devRecallAtK).toFixed(1)}${em ? `, dev EM ${(100 * point.devEm!).toFixed(1)} F1 ${(100 * point.devF1!).toFixed(1)}` : ''}`,
  );
  return point;
}

const runs: Array<{ lr: number; retrieverLr?: number; trainable: string; points: Point[] }> = [];
// Written after every point, so a run cut short still leaves its curves so far.
const save = () =>
  writeFileSync(
    outPath,
    JSON.stringify({ config: { modelsDir, shots, clients, steps, evalEvery, batchSize, k, maxLength, dev: dev.length, seed }, runs }, null, 1),
  );
const baseline = await measure(0, withEmBaseline);
// LoRA last: enabling it adds adapters to the bundle (and freezes the rest of the reader).
for (const trainableName of [...trainables.filter((t) => t !== 'lora'), ...trainables.filter((t) => t === 'lora')]) {
  let trainable = trainableName as TrainableSelection;
  if (trainableName === 'lora') {
    bundle.enableLora(lora);
    snapshot = await bundle.exportGlobal();
    trainable = trainableForWirePrefixes([READER_LORA_WIRE_PREFIX]);
  }
  const label = trainableName === 'lora' ? `lora ${JSON.stringify(lora)}` : trainableName;
  for (const lr of lrs) {
    // Only a run that trains the query encoder has its own rate to vary.
    for (const retrieverLr of trainableName.includes('query-encoder') ? retrieverLrs : [undefined]) {
      bundle.applyGlobal(snapshot, 0);
      log(`lr ${lr}${retrieverLr === undefined ? '' : `, query-encoder lr ${retrieverLr}`}, trains ${label}`);
      const points: Point[] = [baseline];
      runs.push({ lr, ...(retrieverLr === undefined ? {} : { retrieverLr }), trainable: label, points });
      for (let done = 0; done < steps; done += evalEvery) {
        const chunk = Math.min(evalEvery, steps - done);
        // One chunk = one round's local training: a fresh AdamW each time, as a client starts one
        // every round (so `--eval-every` is the local steps per round of a federated run).
        const result = await trainLocally(bundle, train.map(toPair), trainStore, {
          k,
          maxLength,
          steps: chunk,
          batchSize,
          lr,
          ...(retrieverLr === undefined ? {} : { retrieverLr }),
          trainable,
          seed: seed * 1000 + done,
        });
        points.push(await measure(done + chunk, withEm && done + chunk >= steps, result.metrics.loss));
        save();
      }
    }
  }
}
log(`wrote ${outPath}`);
