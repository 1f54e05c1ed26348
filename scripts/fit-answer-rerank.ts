/**
 * npx tsx scripts/fit-answer-rerank.ts [--models public/models/demo] [--crab results/cache/crab-mini]
 *                                      [--split train] [--limit N] [--beams 16] [--write]
 *
 * Fits the answer-reranking weights (src/corag/answer-rerank.ts) of a reader on CRAB-mini TRAIN
 * questions (never dev or test) with their gold passage: the reader proposes its `beams` best
 * extractive spans per question (the app's and CRAB's decoding: copy pointer, passage spans), and
 * a grid search over (reader, type, proximity, questionOverlap) picks the weights with the best
 * EM (then F1; then the larger reader weight). Prints the best settings beside the reader's own
 * first choice and the share of questions whose answer is among the candidates at all; `--write`
 * stores the winner as `corag.answer_rerank` in <models>/reader/config.json, where generateAnswers
 * (the app, CRAB, eval-pretrained) picks it up for extractive decoding.
 * Needs `npm run crab:data` first.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { candidateFeatures, rerankScore, type AnswerFeatures, type AnswerRerankWeights } from '../src/corag/answer-rerank';
import { ModelBundle } from '../src/corag/model-bundle';
import { candidateAnswers } from '../src/corag/reader';
import { exactMatch, f1Score } from '../src/text/answer-metrics';
import { initBackend } from '../src/model/backend';
import { parseReaderPolicy, readerPolicyToJson } from '../src/corag/checkpoint-policy';
import { parseT5Config, t5ConfigJsonText } from '../src/model/t5/config';
import { folderModelSource } from '../src/platform/node/folder-source';
import { readQuestionFolder } from '../src/platform/node/crab-files';
import { optionValue } from './options';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => optionValue(argv, name, fallback);
const modelsDir = opt('models', 'public/models/demo');
const crabDir = opt('crab', 'results/cache/crab-mini');
const split = opt('split', 'train');
const limit = Number(opt('limit', '512'));
const beams = Number(opt('beams', '16'));
if (split !== 'train') throw new Error('fit-answer-rerank: fit on training questions only (--split train); dev and test are for measuring');
await initBackend('wasm');

const folder = readQuestionFolder(crabDir, split, limit);
const passages = new Map(folder.passages.map((p) => [p.id, p]));
const questions = folder.questions;
const bundle = await ModelBundle.fromCheckpoints({
  reader: folderModelSource(join(modelsDir, 'reader')),
  retriever: folderModelSource(join(modelsDir, 'retriever')),
});
console.log(`${questions.length} ${split} questions with their gold passage, ${beams} candidates each`);

// The reader's candidates and their features, computed once.
const started = Date.now();
const scored: { answers: string[]; candidates: { text: string; score: number; features: AnswerFeatures }[] }[] = [];
const BATCH = 8;
for (let i = 0; i < questions.length; i += BATCH) {
  const chunk = questions.slice(i, i + BATCH);
  const context = chunk.map((q) => [passages.get(q.relevant[0])!]);
  const candidates = await candidateAnswers(
    bundle,
    chunk.map((q) => q.question),
    context,
    beams,
    { extractive: true, maxLength: 192, maxNewTokens: 16 },
  );
  candidates.forEach((cands, j) => {
    const texts = context[j].map((p) => p.text);
    const features = candidateFeatures(
      cands.map((c) => c.text),
      chunk[j].question,
      texts,
    );
    scored.push({ answers: chunk[j].answers, candidates: cands.map((c, n) => ({ text: c.text, score: c.score, features: features[n] })) });
  });
  const done = Math.min(i + BATCH, questions.length);
  const eta = (((Date.now() - started) / done) * (questions.length - done)) / 1000;
  process.stdout.write(`\rcandidates ${done}/${questions.length} (${((100 * done) / questions.length).toFixed(0)}%), ETA ${eta.toFixed(0)} s   `);
}
process.stdout.write('\n');

function evaluate(w: AnswerRerankWeights): { EM: number; F1: number } {
  let em = 0;
  let f1 = 0;
  for (const q of scored) {
    let best: (typeof q.candidates)[number] | undefined;
    let bestScore = -Infinity;
    for (const c of q.candidates) {
      const s = rerankScore(c.score, c.features, w);
      if (s > bestScore) [best, bestScore] = [c, s];
    }
    if (!best) continue;
    em += exactMatch(best.text, q.answers);
    f1 += f1Score(best.text, q.answers);
  }
  return { EM: (100 * em) / scored.length, F1: (100 * f1) / scored.length };
}

const grid: { w: AnswerRerankWeights; EM: number; F1: number }[] = [];
for (const reader of [0, 0.5, 1, 2]) {
  for (const type of [0, 0.5, 1, 2, 3]) {
    for (const proximity of [0, 1, 2, 4, 8]) {
      for (const questionOverlap of [0, 0.5, 1, 2]) {
        const w = { reader, type, proximity, questionOverlap };
        grid.push({ w, ...evaluate(w) });
      }
    }
  }
}
grid.sort((a, b) => b.EM - a.EM || b.F1 - a.F1 || b.w.reader - a.w.reader);
const firstChoice = evaluate({ reader: 1, type: 0, proximity: 0, questionOverlap: 0 });
const oracle = (100 * scored.filter((q) => q.candidates.some((c) => exactMatch(c.text, q.answers))).length) / scored.length;
console.log(
  `\nthe reader's first choice: EM ${firstChoice.EM.toFixed(1)}, F1 ${firstChoice.F1.toFixed(1)}; an exact answer among the ${beams} candidates: ${oracle.toFixed(1)} %`,
);
console.log('\n| reader | type | proximity | question overlap | EM | F1 |\n| --- | --- | --- | --- | --- | --- |');
for (const g of grid.slice(0, 10))
  console.log(`| ${g.w.reader} | ${g.w.type} | ${g.w.proximity} | ${g.w.questionOverlap} | ${g.EM.toFixed(1)} | ${g.F1.toFixed(1)} |`);

if (argv.includes('--write')) {
  const path = join(modelsDir, 'reader', 'config.json');
  // Re-written by the exporter's writer: Hugging Face's field types, our settings under "corag"
  // (a reader config.json of ours holds only fields parseT5Config knows); the rest of its policy kept.
  const config = parseT5Config(JSON.parse(readFileSync(path, 'utf8')));
  const corag = readerPolicyToJson({ ...parseReaderPolicy(config.corag), answerRerank: { beams, ...grid[0].w } });
  writeFileSync(path, t5ConfigJsonText({ ...config, corag }));
  console.log(`\nwrote corag.answer_rerank ${JSON.stringify(corag?.answer_rerank)} to ${path}`);
}
bundle.dispose();
