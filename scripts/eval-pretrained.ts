/**
 * npx tsx scripts/eval-pretrained.ts [--models public/models/demo] [--crab results/cache/crab-mini]
 *                                    [--backend wasm] [--k 4] [--limit N] [--out docs/lab/pretrain-eval.json]
 *                                    [--gold-only] [--cloze N] [--copy W] [--split dev|train|all] [--retrieval-only]
 *                                    [--keyword-weight W] [--keyword-weights W1,W2,…]
 *
 * Quality of the pretrained checkpoints on CRAB-mini DEV questions (built by `npm run crab:data`):
 * - retriever recall@1/5/20 of a relevant passage over all CRAB-mini passages, for the pretrained
 *   retriever, an untrained one of the same shape (same seed recipe) and BM25, in the same run;
 * - hybrid retrieval as the app's "Keyword search too" does it (src/corag/hybrid-retrieval.ts:
 *   the retriever's and BM25's top-20 fused by reciprocal rank, BM25's weighted by the retriever's
 *   `corag.hybrid_keyword_weight` or `--keyword-weight W`; `--keyword-weights 1,2,4` adds a recall row
 *   per weight to `--retrieval-only`, for choosing one on `--split train` questions);
 * - reader EM/F1 with the gold (first relevant) passage, and with the top-k retrieved passages
 *   (dense, and hybrid),
 *   each with free generation, with extractive decoding (answers restricted to whole-word
 *   spans of the passages, src/corag/extractive.ts) and, when the reader carries `corag.answer_rerank`
 *   weights, with reranked extractive answers (src/corag/answer-rerank.ts), beside a baseline
 *   without any model (the passage's typed answers ranked by the same features).
 * Prints a markdown table and writes the numbers as JSON. `--gold-only`: the reader with the gold
 * passage alone (no retrieval), a quick check of a reader checkpoint while it trains. `--cloze N`:
 * also N cloze questions (src/pretrain/examples.ts, the pretraining task: a sentence with a name,
 * number or date replaced by a question word) made from those gold passages — in-distribution for
 * the pretrained reader (its corpus holds these passages), so it shows whether it copies at all.
 * `--retrieval-only`: the recall table alone (a quick check of a retriever checkpoint while it trains).
 * `--crab public/demo --split all` measures the same on the app's demo passages and questions.
 * Decoding uses the reader's own copy-decoding weight (config.json `corag.copy_decoding_weight`, src/model/t5/copy-decoding.ts);
 * `--copy W` overrides it (0: plain decoding).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { exactMatch, f1Score } from '../src/text/answer-metrics';
import { clozeExamples } from '../src/pretrain/examples';
import { rerankAnswers } from '../src/corag/answer-rerank';
import { typedAnswers } from '../src/text/answer-types';
import { sentences } from '../src/text/sentences';
import { Bm25Index } from '../src/retrieval/bm25';
import { reciprocalRankFusion } from '../src/retrieval/rank-fusion';
import { ModelBundle } from '../src/corag/model-bundle';
import { generateAnswers } from '../src/corag/reader';
import { embedPassages, embedQueries, type RetrieverWithTokenizer } from '../src/corag/retrieve';
import { initBackend, parseBackendName } from '../src/model/backend';
import { Contriever } from '../src/model/contriever';
import { ParameterStore } from '../src/model/params';
import { folderModelSource } from '../src/platform/node/folder-source';
import { readQuestionFolder, type FolderQuestion } from '../src/platform/node/crab-files';
import type { Passage } from '../src/crab/types';
import { optionValue } from './options';
import { tinyBertWeights } from '../src/model/tiny';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => optionValue(argv, name, fallback);
const modelsDir = opt('models', 'public/models/demo');
const crabDir = opt('crab', 'results/cache/crab-mini');
const k = Number(opt('k', '4'));
const limit = Number(opt('limit', '1000000'));
const outPath = opt('out', 'docs/lab/pretrain-eval.json');
const goldOnly = argv.includes('--gold-only');
const retrievalOnly = argv.includes('--retrieval-only');
const copyOverride = argv.includes('--copy') ? Number(opt('copy', '0')) : undefined;
const clozeCount = Number(opt('cloze', '0'));
const backend = await initBackend(parseBackendName(opt('backend', 'wasm')));
const started = Date.now();
const progress = (what: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${what}`);

type Qa = FolderQuestion;
// `--split all` takes every question (public/demo/qa.jsonl has no splits).
const split = opt('split', 'dev');
const { passages, questions: dev } = readQuestionFolder(crabDir, split, limit);
const byId = new Map(passages.map((p, i) => [p.id, i]));
console.log(`backend ${backend.name}; ${passages.length} passages, ${dev.length} ${split === 'all' ? '' : `${split} `}questions with a relevant passage`);

const recallAt = (ranked: number[][], ks: number[]) =>
  Object.fromEntries(
    ks.map((n) => [`R@${n}`, ranked.filter((r, q) => r.slice(0, n).some((p) => dev[q].relevant.includes(passages[p].id))).length / dev.length]),
  );

/** Top-20 passage indices per dev question, by inner product of Contriever embeddings. */
async function denseRanking(model: RetrieverWithTokenizer): Promise<number[][]> {
  const index = tf.tensor2d(concatRows(await embedPassages(model, passages, { batchSize: 64, maxLength: 160 })), [
    passages.length,
    model.retriever.config.hidden_size,
  ]);
  const queries = await embedQueries(
    model,
    dev.map((d) => d.question),
    { batchSize: 64, maxLength: 64 },
  );
  const top = tf.tidy(() => tf.topk(tf.matMul(tf.tensor2d(concatRows(queries), [dev.length, index.shape[1]]), index, false, true), 20).indices);
  const ranked = (await top.array()) as number[][];
  tf.dispose([index, top]);
  return ranked;
}
const concatRows = (rows: readonly Float32Array[]) => {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    out.set(r, at);
    at += r.length;
  }
  return out;
};

async function rankings() {
  // BM25 over title + text (the CRAB categoriser's index text).
  const bm25 = new Bm25Index(passages.map((p) => ({ id: p.id, text: `${p.title}\n${p.text}` })));
  const bm25Ranked = dev.map((q) => bm25.search(q.question, 20).map((h) => h.index));
  progress('BM25 ranked');
  const pretrainedRanked = await denseRanking(bundle);
  progress('pretrained retriever ranked');
  // An untrained retriever of the same shape (the seed recipe of the tiny test models).
  const config = bundle.retrieverConfig;
  const weights = new ParameterStore([...tinyBertWeights(config, 1235)].map(([n, t]) => [n, tf.tensor(t.data, t.shape, 'float32')] as [string, tf.Tensor]));
  const untrained = Contriever.fromParameters(config, weights);
  weights.dispose();
  const untrainedRanked = await denseRanking({ retriever: untrained, retrieverTokenizer: bundle.retrieverTokenizer });
  untrained.params.dispose();
  progress('untrained retriever ranked');
  return { bm25Ranked, pretrainedRanked, untrainedRanked };
}

// The product's path: the same bundle, generation and copy decoding as the app and CRAB.
const bundle = await ModelBundle.fromCheckpoints({
  reader: folderModelSource(join(modelsDir, 'reader')),
  retriever: folderModelSource(join(modelsDir, 'retriever')),
});
const copyWeight = copyOverride ?? bundle.policy.reader.copyDecodingWeight ?? 0;
console.log(`copy decoding: ${copyWeight > 0 ? `weight ${copyWeight}` : 'off'}`);
const ANSWER_BATCH = 8;
/**
 * How answers are decoded: free generation; extractive (whole-word passage spans, the reader's
 * first choice); reranked (extractive, chosen among the reader's best spans by the reader's own
 * `answer_rerank` weights, src/corag/answer-rerank.ts — what the app and CRAB do when it has them).
 */
type Decoding = 'free' | 'extractive' | 'reranked';
const rerank = bundle.policy.reader.answerRerank;
const decodings: Decoding[] = rerank ? ['free', 'extractive', 'reranked'] : ['free', 'extractive'];
console.log(`answer reranking: ${rerank ? JSON.stringify(rerank) : 'none (the reader has no corag.answer_rerank)'}`);
/** The reader's answers (greedy or reranked beams, ≤ 16 tokens, inputs ≤ 192 tokens) to questions with their passages. */
async function answers(items: readonly Asked[], decoding: Decoding): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < items.length; i += ANSWER_BATCH) {
    const chunk = items.slice(i, i + ANSWER_BATCH);
    const generated = await generateAnswers(
      bundle,
      chunk.map((a) => a.question),
      chunk.map((a) => a.context),
      { maxLength: 192, maxNewTokens: 16, extractive: decoding !== 'free', rerank: decoding === 'reranked' ? rerank : null, copyWeight },
    );
    out.push(...generated.map((g) => g.answer));
  }
  return out;
}
interface Asked {
  question: string;
  answers: string[];
  context: Passage[];
}
type Scored = { EM: number; F1: number; examples: { question: string; prediction: string; answers: string[] }[] };
/** SQuAD EM/F1 of predictions over `items`, with the first 8 of them. */
const scorePredictions = (items: readonly Asked[], predictions: readonly string[]): Scored => {
  let em = 0;
  let f1 = 0;
  const examples: Scored['examples'] = [];
  for (const [i, { question, answers }] of items.entries()) {
    const prediction = predictions[i];
    em += exactMatch(prediction, answers);
    f1 += f1Score(prediction, answers);
    if (examples.length < 8) examples.push({ question, prediction, answers });
  }
  return { EM: em / Math.max(items.length, 1), F1: f1 / Math.max(items.length, 1), examples };
};
const score = async (items: readonly Asked[], decoding: Decoding = 'free') => scorePredictions(items, await answers(items, decoding));
/** Each decoding's score over `items`, by decoding. */
const scoreAll = async (items: readonly Asked[]) => {
  const out: Partial<Record<Decoding, Scored>> = {};
  for (const d of decodings) out[d] = await score(items, d);
  return out as Record<Decoding, Scored>;
};
/**
 * A baseline without any model: every typed answer of the passages (src/text/answer-types.ts)
 * ranked by the reranking features alone (the reader's weights, less its score). It shows how
 * much of an answer the rules find by themselves.
 */
const rulesAlone = (items: readonly Asked[]) => {
  if (!rerank) return undefined;
  const predictions = items.map((a) => {
    const texts = a.context.map((p) => p.text);
    const candidates = texts.flatMap((t) => sentences(t).flatMap((s) => typedAnswers(s).map((x) => ({ text: x.text, score: 0 }))));
    return rerankAnswers(candidates, a.question, texts, { ...rerank, reader: 0 })[0]?.candidate.text ?? '';
  });
  return scorePredictions(items, predictions);
};
const devWith = (context: (q: Qa, i: number) => Passage[]): Asked[] =>
  dev.map((q, i) => ({ question: q.question, answers: q.answers, context: context(q, i) }));
const goldPassage = (q: Qa) => passages[byId.get(q.relevant[0])!];
const pct = (x: number) => (100 * x).toFixed(1);
const ks = [1, 5, 20];
const printRecall = (retrieval: Record<string, Record<string, number>>) => {
  console.log('\n| retriever | R@1 | R@5 | R@20 |\n| --- | --- | --- | --- |');
  for (const [name, r] of Object.entries(retrieval)) console.log(`| ${name} | ${ks.map((n) => pct(r[`R@${n}`])).join(' | ')} |`);
};
/** Recall of the three rankings every run measures, in table order. */
const recallOf = (r: Awaited<ReturnType<typeof rankings>>) => ({
  pretrained: recallAt(r.pretrainedRanked, ks),
  untrained: recallAt(r.untrainedRanked, ks),
  bm25: recallAt(r.bm25Ranked, ks),
});
/** The app's hybrid ranking (src/corag/hybrid-retrieval.ts): both top-20 lists fused by reciprocal rank, BM25's weighted. */
const hybridRanking = (r: Awaited<ReturnType<typeof rankings>>, keywordWeight: number) =>
  dev.map((_, i) =>
    reciprocalRankFusion([r.pretrainedRanked[i].map(String), r.bm25Ranked[i].map(String)], 60, [1, keywordWeight])
      .slice(0, 20)
      .map((f) => Number(f.key)),
  );
const keywordWeights = opt('keyword-weights', '').split(',').filter(Boolean).map(Number);
// The app's weight: the retriever's own corag.hybrid_keyword_weight (config.json), unless overridden.
const keywordWeight = argv.includes('--keyword-weight') ? Number(opt('keyword-weight', '1')) : (bundle.policy.retriever.hybridKeywordWeight ?? 1);
if (retrievalOnly) {
  const ranked = await rankings();
  const retrieval: Record<string, Record<string, number>> = recallOf(ranked);
  retrieval.hybrid = recallAt(hybridRanking(ranked, keywordWeight), ks);
  for (const w of keywordWeights) retrieval[`hybrid, keyword weight ${w}`] = recallAt(hybridRanking(ranked, w), ks);
  printRecall(retrieval);
  writeFileSync(
    outPath,
    JSON.stringify({ backend: backend.name, models: modelsDir, devQuestions: dev.length, passages: passages.length, retrieval }, null, 2) + '\n',
  );
  bundle.dispose();
  process.exit(0);
}
const goldAsked = devWith((q) => [goldPassage(q)]);
const gold = await scoreAll(goldAsked);
const goldRules = rulesAlone(goldAsked);
progress('reader with gold passages done');
// Cloze questions from the dev questions' gold passages: one per passage, the first candidate.
const cloze = await (async () => {
  if (clozeCount <= 0) return undefined;
  const asked: Asked[] = [];
  for (const q of dev) {
    const c = clozeExamples(goldPassage(q).text)[0];
    if (c && asked.length < clozeCount) asked.push({ question: c.question, answers: [c.answer], context: [goldPassage(q)] });
  }
  const result = { questions: asked.length, ...(await score(asked)) };
  progress('cloze questions done');
  return result;
})();
const printExamples = () => {
  if (cloze) {
    console.log(`cloze questions from the gold passages (${cloze.questions}): EM ${pct(cloze.EM)}, F1 ${pct(cloze.F1)}`);
    for (const e of cloze.examples.slice(0, 5)) console.log(`  Q: ${e.question}  ->  "${e.prediction}"  (answer: ${e.answers[0]})`);
  }
  for (const d of decodings) {
    console.log(`gold passage, ${d} decoding:`);
    for (const e of gold[d].examples.slice(0, 5)) console.log(`  Q: ${e.question}  ->  "${e.prediction}"  (gold: ${e.answers[0]})`);
  }
};
/** Markdown rows: one per (input, decoding), then the rules-alone baseline. */
const printReaderTable = (inputs: [string, Record<Decoding, Scored>][]) => {
  console.log('\n| reader input | decoding | EM | F1 |\n| --- | --- | --- | --- |');
  for (const [input, r] of inputs) for (const d of decodings) console.log(`| ${input} | ${d} | ${pct(r[d].EM)} | ${pct(r[d].F1)} |`);
  if (goldRules) console.log(`| gold passage | no reader: typed answers ranked by the reranking features | ${pct(goldRules.EM)} | ${pct(goldRules.F1)} |`);
};
/** The JSON layout of earlier runs (reader = free, readerExtractive = first choice), plus readerReranked and rulesAlone. */
const byDecoding = (parts: Record<string, Record<Decoding, Scored> & { k?: number }>, d: Decoding) =>
  Object.fromEntries(Object.entries(parts).map(([name, r]) => [name, r.k === undefined ? r[d] : { k: r.k, ...r[d] }]));
if (goldOnly) {
  printReaderTable([['gold passage', gold]]);
  printExamples();
  writeFileSync(
    outPath,
    JSON.stringify(
      {
        backend: backend.name,
        models: modelsDir,
        copyWeight,
        answerRerank: rerank,
        devQuestions: dev.length,
        reader: { goldPassage: gold.free, cloze },
        readerExtractive: { goldPassage: gold.extractive },
        ...(rerank ? { readerReranked: { goldPassage: gold.reranked }, rulesAlone: { goldPassage: goldRules } } : {}),
      },
      null,
      2,
    ) + '\n',
  );
} else {
  const ranked = await rankings();
  const { pretrainedRanked } = ranked;
  const retrieved = { k, ...(await scoreAll(devWith((_, i) => pretrainedRanked[i].slice(0, k).map((p) => passages[p])))) };
  // The app's "Keyword search too" (src/corag/hybrid-retrieval.ts): both top-20 lists fused by (weighted) reciprocal rank.
  const hybridRanked = hybridRanking(ranked, keywordWeight);
  const hybrid = { k, ...(await scoreAll(devWith((_, i) => hybridRanked[i].slice(0, k).map((p) => passages[p])))) };
  progress('reader with retrieved passages done');
  const parts = { goldPassage: gold, retrieved, hybrid };
  const results = {
    backend: backend.name,
    models: modelsDir,
    copyWeight,
    answerRerank: rerank,
    devQuestions: dev.length,
    passages: passages.length,
    keywordWeight,
    retrieval: { ...recallOf(ranked), hybrid: recallAt(hybridRanked, ks) },
    reader: { ...byDecoding(parts, 'free'), cloze },
    readerExtractive: byDecoding(parts, 'extractive'),
    ...(rerank ? { readerReranked: byDecoding(parts, 'reranked'), rulesAlone: { goldPassage: goldRules } } : {}),
  };
  printRecall(results.retrieval);
  printReaderTable([
    ['gold passage', gold],
    [`top-${k} retrieved (pretrained retriever)`, retrieved],
    [`top-${k} hybrid (retriever + BM25, keyword weight ${keywordWeight})`, hybrid],
  ]);
  printExamples();
  writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
}
bundle.dispose();
