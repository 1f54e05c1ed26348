import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { TextTokenizer } from '../../src/model/tokenizer';
import { readCheckpointFiles, saveCheckpointFiles } from '../../src/platform/node/pretrain-checkpoint-files';
import { parsePretrainConfig } from '../../src/pretrain/config';
import { exportCheckpoints } from '../../src/pretrain/export';
import { parseT5Config } from '../../src/model/t5/config';
import { parseBertConfig } from '../../src/model/bert/config';
import { parseReaderPolicy, parseRetrieverPolicy } from '../../src/corag/checkpoint-policy';
import { parseDprPassages } from '../../src/pretrain/corpus';
import { preparePretrainData, type PretrainData } from '../../src/pretrain/data';
import type { ParameterStore } from '../../src/model/params';
import { Pretrainer } from '../../src/pretrain/trainer';
import { spanWindow } from '../../src/pretrain/windows';
import { trimUnigramTokenizer, trimWordPieceTokenizer } from '../../src/pretrain/vocab-trim';
import { hfConfigTypeProblems } from '../model/hf-config-types';

const read = (rel: string) => JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as Record<string, unknown>;

const config = parsePretrainConfig({
  seed: 7,
  reader: { d_model: 32, d_kv: 8, num_heads: 4, d_ff: 64, num_layers: 1, num_decoder_layers: 1 },
  retriever: { hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 64 },
  steps: 40,
  lr: 0.01,
  warmupSteps: 0,
  readerBatch: 4,
  passagesPerQuestion: 2,
  readerMaxLength: 64,
  targetMaxLength: 12,
  queryMaxLength: 24,
  contrastiveBatch: 8,
  cropMaxLength: 24,
  queueSize: 16,
  reindexEvery: 5,
  indexMaxLength: 48,
});

let data: PretrainData;

/** A tiny corpus: 12 Wikipedia passages, with both tokenizers trimmed to them. */
function tinyCorpus() {
  const passages = parseDprPassages(readFileSync(new URL('../../../shared/data/wikipedia/psgs_w100.sample1000.tsv', import.meta.url), 'utf8')).slice(0, 12);
  const texts = passages.flatMap((p) => [p.title, p.text, `title: ${p.title} context: ${p.text}`, 'question: answer: what when how many']);
  const t5 = trimUnigramTokenizer(
    read('../../public/models/tokenizers/t5/tokenizer.json'),
    read('../../public/models/tokenizers/t5/tokenizer_config.json'),
    texts,
  );
  const bert = trimWordPieceTokenizer(
    read('../../public/models/tokenizers/bert-base-uncased/tokenizer.json'),
    read('../../public/models/tokenizers/bert-base-uncased/tokenizer_config.json'),
    texts,
  );
  return {
    passages,
    reader: TextTokenizer.fromJson(t5.tokenizerJson, t5.tokenizerConfig),
    retriever: TextTokenizer.fromJson(bert.tokenizerJson, bert.tokenizerConfig),
  };
}

beforeAll(async () => {
  await initBackend('cpu');
  const { passages, reader, retriever } = tinyCorpus();
  data = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2 });
});

describe('preparePretrainData', () => {
  it('with clozeContextWords N, a cloze target starts with the N words before the answer', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const plain = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 0, clozePerPassage: 2 });
    const prefixed = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 0, clozePerPassage: 2, clozeContextWords: 2 });
    expect(prefixed.examples.length).toBe(plain.examples.length);
    let longer = 0;
    prefixed.examples.forEach((ex, i) => {
      const answer = reader.decode(plain.examples[i].target).replace('<extra_id_0>', '').trim();
      const target = reader.decode(ex.target).replace('<extra_id_0>', '').trim();
      expect(target.endsWith(answer)).toBe(true);
      const context = target.slice(0, target.length - answer.length).trim();
      expect(context.split(/\s+/).filter(Boolean).length).toBeLessThanOrEqual(2);
      if (context) {
        longer++;
        // Compared on letters and digits only: the tokenizer's decode normalises quotes and spaces.
        const bare = (t: string) => t.replace(/[^\p{L}\p{N}]/gu, '');
        expect(bare(passages[ex.passage].text)).toContain(bare(`${context}${answer}`));
      }
    });
    expect(longer).toBeGreaterThan(prefixed.examples.length / 2);
  });

  it('with questionStyleShare 1 every cloze question opens with a question word and keeps its answer; share 0 leaves the data as it was', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const plain = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2 });
    const zero = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2, questionStyleShare: 0 });
    expect(zero).toEqual(plain);
    const styled = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2, questionStyleShare: 1 });
    const cloze = styled.examples.filter((e) => e.kind === 'cloze');
    expect(cloze.length).toBe(plain.examples.filter((e) => e.kind === 'cloze').length);
    for (const ex of cloze) {
      expect(reader.decode(ex.readerQuery)).toMatch(/^question: (When|What|On what|In what|How many|Which|Who)\b.*\? answer:/);
      expect(retriever.decode(ex.retrieverQuery)).toMatch(/^(when|what|on what|in what|how many|which|who)\b/);
    }
  });

  it('with questionGenerator "typed" the cloze targets are spans of their passage and the masked spans are as before', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const options = { seed: 7, mlmPerPassage: 1, clozePerPassage: 3, questionStyleShare: 0.85 };
    const plain = preparePretrainData(passages, reader, retriever, options);
    const typed = preparePretrainData(passages, reader, retriever, { ...options, questionGenerator: 'typed' });
    const cloze = typed.examples.filter((e) => e.kind === 'cloze');
    expect(cloze.length).toBeGreaterThan(0);
    for (const ex of cloze) {
      const answer = reader.decode(ex.target).replace('<extra_id_0>', '').trim();
      expect(passages[ex.passage].text.replace(/\s+/g, ' ')).toContain(answer);
      expect(reader.decode(ex.readerQuery), reader.decode(ex.readerQuery)).toMatch(/^question: .+\? answer:/);
    }
    // The first passage's masked span is drawn before any question, so it is the same in both.
    expect(typed.examples[0]).toEqual(plain.examples[0]);
  });
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Every parameter's values, by name, read back now. */
async function snapshot(store: ParameterStore): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of store.entries()) out.set(name, (await v.data()) as Float32Array);
  return out;
}

describe('Pretrainer', () => {
  it('prepares both kinds of examples from the passages', () => {
    expect(data.examples.some((e) => e.kind === 'mlm')).toBe(true);
    expect(data.examples.some((e) => e.kind === 'cloze')).toBe(true);
  });

  it('a few seeded steps on a tiny corpus lower the reader loss and the contrastive retriever loss', async () => {
    const trainer = Pretrainer.create(config, data);
    try {
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      const first = losses.slice(0, 4);
      const last = losses.slice(-4);
      expect(mean(last.map((l) => l.reader))).toBeLessThan(0.8 * mean(first.map((l) => l.reader)));
      expect(mean(last.map((l) => l.contrastive))).toBeLessThan(mean(first.map((l) => l.contrastive)));
      for (const l of losses) expect(Number.isFinite(l.pdist) && l.pdist >= 0).toBe(true);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('a run resumed from a checkpoint on disk continues exactly where the saved one stopped (same next losses)', async () => {
    const original = Pretrainer.create(config, data);
    let saved;
    let expected;
    try {
      // 6 steps: past a re-index (every 5) so the index and queue in the checkpoint matter.
      for (let i = 0; i < 6; i++) await original.trainStep();
      saved = await original.saveCheckpoint();
      expected = [await original.trainStep(), await original.trainStep()];
    } finally {
      original.dispose();
    }
    // Through the disk, as `npm run pretrain` resumes: cut into small parts, read back, verified.
    const dir = mkdtempSync(join(tmpdir(), 'corag-ckpt-'));
    saveCheckpointFiles(dir, saved, { partBytes: 256 * 1024 });
    expect(
      readdirSync(
        join(
          dir,
          readdirSync(dir).find((n) => n.startsWith('step-000006'))!,
        ),
      ).length,
    ).toBeGreaterThan(2);
    const resumed = Pretrainer.resume(config, data, readCheckpointFiles(dir)!);
    rmSync(dir, { recursive: true, force: true });
    try {
      expect(resumed.step).toBe(6);
      const got = [await resumed.trainStep(), await resumed.trainStep()];
      expect(got).toEqual(expected);
    } finally {
      resumed.dispose();
    }
  }, 60_000);

  it('a retriever-only phase (reader weight 0, inverse cloze on) leaves the reader untouched and lowers the inverse-cloze loss', async () => {
    const phase = parsePretrainConfig({ ...config, readerWeight: 0, pdistWeight: 0, contrastiveWeight: 1, ictWeight: 1, lr: 0.005 });
    const trainer = Pretrainer.create(phase, data);
    try {
      const before = await snapshot(trainer.readerParams);
      const losses = [];
      for (let i = 0; i < 16; i++) losses.push(await trainer.trainStep());
      for (const l of losses) {
        expect(Number.isNaN(l.reader) && Number.isNaN(l.pdist)).toBe(true);
        expect(Number.isFinite(l.ict) && Number.isFinite(l.contrastive)).toBe(true);
      }
      expect(mean(losses.slice(-4).map((l) => l.ict))).toBeLessThan(mean(losses.slice(0, 4).map((l) => l.ict)));
      expect(await snapshot(trainer.readerParams)).toEqual(before);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('a reader-only phase (retriever weights 0) leaves the retriever untouched and lowers the reader loss', async () => {
    const phase = parsePretrainConfig({ ...config, readerWeight: 1, pdistWeight: 0, contrastiveWeight: 0, ictWeight: 0 });
    const trainer = Pretrainer.create(phase, data);
    try {
      const before = await snapshot(trainer.retrieverParams);
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      for (const l of losses) expect(Number.isNaN(l.contrastive) && Number.isNaN(l.ict) && Number.isNaN(l.pdist)).toBe(true);
      expect(mean(losses.slice(-4).map((l) => l.reader))).toBeLessThan(0.8 * mean(losses.slice(0, 4).map((l) => l.reader)));
      expect(await snapshot(trainer.retrieverParams)).toEqual(before);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('with copy-attention supervision and previous-token heads, the copy loss is reported and falls with the reader loss', async () => {
    const phase = parsePretrainConfig({ ...config, pdistWeight: 0, contrastiveWeight: 0, copyAttentionWeight: 1, previousTokenHeads: 2 });
    const plain = Pretrainer.create(parsePretrainConfig({ ...config, pdistWeight: 0, contrastiveWeight: 0 }), data);
    const trainer = Pretrainer.create(phase, data);
    try {
      // The prior is in the initial weights: heads 0 and 1 favour the keys 1 and 2 positions back.
      const bias = (name: string, p: Pretrainer) => p.readerParams.get(name).dataSync();
      const name = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';
      const heads = trainer.readerConfig.num_heads;
      expect(bias(name, trainer)[1 * heads + 0] - bias(name, plain)[1 * heads + 0]).toBeCloseTo(5, 5);
      expect(bias(name, trainer)[2 * heads + 1] - bias(name, plain)[2 * heads + 1]).toBeCloseTo(5, 5);
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      for (const l of losses) expect(Number.isFinite(l.copy) && l.copy >= 0).toBe(true);
      expect(mean(losses.slice(-4).map((l) => l.copy))).toBeLessThan(mean(losses.slice(0, 4).map((l) => l.copy)));
      expect(mean(losses.slice(-4).map((l) => l.reader))).toBeLessThan(0.8 * mean(losses.slice(0, 4).map((l) => l.reader)));
    } finally {
      trainer.dispose();
      plain.dispose();
    }
  }, 60_000);

  it('refuses a config whose every objective weight is 0', () => {
    expect(() => parsePretrainConfig({ ...config, readerWeight: 0, pdistWeight: 1, contrastiveWeight: 0, ictWeight: 0 })).toThrow(
      /every objective weight is 0/,
    );
  });
});

describe('spanWindow (mlmWithSource) on prepared data', () => {
  it("finds each prepared masked span's first span in its source passage", () => {
    const mlm = data.examples.filter((e) => e.kind === 'mlm');
    expect(mlm.length).toBeGreaterThan(5);
    let found = 0;
    for (const ex of mlm) {
      const ids = data.passages[ex.passage].readerIds;
      const window = spanWindow(ids, ex.anchor!, 48);
      if (ex.anchor!.length > 0 && window.some((_, i) => ex.anchor!.every((t, k) => window[i + k] === t))) found++;
    }
    // Tokenized alone a span can differ from in context (a word glued to punctuation): most match.
    expect(found).toBeGreaterThan(mlm.length * 0.7);
  });
});

describe('masked spans with their source passage (mlmWithSource)', () => {
  it("puts each masked-span example's own passage among its k passages only when asked, as a window holding the first span", async () => {
    const mlm = data.examples.filter((e) => e.kind === 'mlm');
    for (const withSource of [false, true]) {
      // Inputs long enough for a masked window's query (~55 tokens) and the 40-token source window.
      const trainer = Pretrainer.create(parsePretrainConfig({ ...config, mlmWithSource: withSource, readerPassageWindow: 40, readerMaxLength: 112 }), data);
      try {
        await trainer.trainStep(); // builds the passage index
        // retrieve() and readerInputs() are the trainer's internals: reached for this check only.
        const internals = trainer as unknown as {
          retrieve(ex: typeof mlm): Promise<number[][]>;
          readerInputs(ex: typeof mlm, retrieved: number[][]): { ids: tf.Tensor2D; mask: tf.Tensor2D; labels: tf.Tensor2D };
        };
        const retrieved = await internals.retrieve(mlm);
        retrieved.forEach((r, i) => {
          expect(r).toHaveLength(config.passagesPerQuestion);
          expect(r.includes(mlm[i].passage)).toBe(withSource);
        });
        if (withSource) {
          const inputs = internals.readerInputs(mlm, retrieved);
          const rows = (await inputs.ids.array()) as number[][];
          tf.dispose([inputs.ids, inputs.mask, inputs.labels]);
          const k = config.passagesPerQuestion;
          let holds = 0;
          mlm.forEach((ex, i) => {
            const row = rows[i * k + retrieved[i].indexOf(ex.passage)];
            if (row.some((_, j) => ex.anchor!.every((t, n) => row[j + n] === t))) holds++;
          });
          expect(holds).toBeGreaterThan(mlm.length * 0.7);
        }
      } finally {
        trainer.dispose();
      }
    }
  }, 60_000);
});

describe('every passage as a window (windowEveryPassage)', () => {
  it('with it, no reader row of a cloze example is longer than its question plus the window; without it, the other passages enter whole', async () => {
    const cloze = data.examples.filter((e) => e.kind === 'cloze');
    const window = 16;
    const longest = async (windowEveryPassage: boolean) => {
      const trainer = Pretrainer.create(parsePretrainConfig({ ...config, readerPassageWindow: window, windowEveryPassage, readerMaxLength: 112 }), data);
      try {
        await trainer.trainStep(); // builds the passage index
        const internals = trainer as unknown as {
          retrieve(ex: typeof cloze): Promise<number[][]>;
          readerInputs(ex: typeof cloze, retrieved: number[][]): { ids: tf.Tensor2D; mask: tf.Tensor2D; labels: tf.Tensor2D };
        };
        const inputs = internals.readerInputs(cloze, await internals.retrieve(cloze));
        const mask = (await inputs.mask.array()) as number[][];
        tf.dispose([inputs.ids, inputs.mask, inputs.labels]);
        // Passage tokens of each row: its length less the question part and the EOS.
        return Math.max(...mask.map((row, r) => row.reduce((a, b) => a + b, 0) - cloze[Math.floor(r / config.passagesPerQuestion)].readerQuery.length - 1));
      } finally {
        trainer.dispose();
      }
    };
    expect(await longest(true)).toBeLessThanOrEqual(window);
    expect(await longest(false)).toBeGreaterThan(window);
  }, 60_000);
});

describe('exportCheckpoints', () => {
  const tokenizerFiles = { tokenizerJson: {}, tokenizerConfig: {}, specialTokensMap: {} };
  const configsOf = async (weights: { copyDecodingWeight: number; hybridKeywordWeight: number }) => {
    const trainer = Pretrainer.create(parsePretrainConfig({ ...config, ...weights }), data);
    try {
      const { reader, retriever } = await exportCheckpoints(trainer, { reader: tokenizerFiles, retriever: tokenizerFiles }, {});
      const text = (files: typeof reader) => new TextDecoder().decode(files.get('config.json')!);
      // What transformers would check: every top-level field of the declared JSON type, ours under "corag".
      expect(hfConfigTypeProblems(text(reader), 't5')).toEqual([]);
      expect(hfConfigTypeProblems(text(retriever), 'bert')).toEqual([]);
      return {
        reader: parseReaderPolicy(parseT5Config(JSON.parse(text(reader))).corag),
        retriever: parseRetrieverPolicy(parseBertConfig(JSON.parse(text(retriever))).corag),
      };
    } finally {
      trainer.dispose();
    }
  };

  it('writes the copy-decoding and hybrid keyword weights into the config.json files when the recipe sets them, and none otherwise', async () => {
    const set = await configsOf({ copyDecodingWeight: 0.5, hybridKeywordWeight: 4 });
    expect(set.reader.copyDecodingWeight).toBe(0.5);
    expect(set.retriever.hybridKeywordWeight).toBe(4);
    const unset = await configsOf({ copyDecodingWeight: 0, hybridKeywordWeight: 0 });
    expect(unset.reader).toEqual({});
    expect(unset.retriever).toEqual({});
  }, 60_000);
});
