import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { readCheckpointFiles } from '../../../src/platform/node/pretrain-checkpoint-files';
import { parsePretrainConfig } from '../../../src/pretrain/config';
import { preparePretrainWork, runPretraining } from '../../../src/platform/node/pretrain-runner';

const SAMPLE = new URL('../../../../shared/data/wikipedia/psgs_w100.sample1000.tsv', import.meta.url);
const TOKENIZERS = new URL('../../../public/models/tokenizers', import.meta.url).pathname;

describe('runPretraining', () => {
  let dir: string;
  const config = () =>
    parsePretrainConfig({
      seed: 3,
      data: { dprPassages: 'passages.tsv', maxWords: 100, mlmPerPassage: 1, clozePerPassage: 2 },
      reader: { d_model: 32, d_kv: 8, num_heads: 4, d_ff: 64, num_layers: 1, num_decoder_layers: 1 },
      retriever: { hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 64 },
      steps: 50,
      warmupSteps: 0,
      readerBatch: 2,
      passagesPerQuestion: 2,
      readerMaxLength: 48,
      targetMaxLength: 12,
      queryMaxLength: 24,
      contrastiveBatch: 4,
      cropMaxLength: 24,
      queueSize: 8,
      reindexEvery: 50,
      indexMaxLength: 48,
      logEvery: 1,
      copyDecodingWeight: 0.5,
    });

  beforeAll(async () => {
    await initBackend('cpu');
    dir = mkdtempSync(join(tmpdir(), 'corag-pretrain-run-'));
    // The header line and 10 passages of the shared DPR sample.
    writeFileSync(join(dir, 'passages.tsv'), readFileSync(SAMPLE, 'utf8').split('\n').slice(0, 11).join('\n') + '\n');
    preparePretrainWork(config(), dir, TOKENIZERS, join(dir, 'work'), () => {});
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stops after the current step when interrupted, with a checkpoint and the export, and resumes from there', async () => {
    const stop = new AbortController();
    const lines: string[] = [];
    const options = { workDir: join(dir, 'work'), exportDir: join(dir, 'export'), backend: 'cpu', signal: stop.signal };
    const stoppedAt = await runPretraining(config(), {
      ...options,
      log: (line) => {
        lines.push(line);
        // Aborted from a later macrotask, as a signal handler would be: the loop must yield to it.
        if (line.startsWith('step 2/')) setImmediate(() => stop.abort());
      },
    });
    expect(stoppedAt).toBe(2);
    expect(lines.some((l) => l.includes('stopping at step 2 (interrupted)'))).toBe(true);
    expect(JSON.parse(readCheckpointFiles(join(dir, 'work', 'checkpoint'))!.state).step).toBe(2);
    expect(existsSync(join(dir, 'export', 'reader', 'model.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'export', 'reader', 'config.json'), 'utf8')).corag.copy_decoding_weight).toBe(0.5);
    const resumed: string[] = [];
    expect(await runPretraining(config(), { ...options, signal: undefined, stopAtStep: 3, log: (l) => resumed.push(l) })).toBe(3);
    expect(resumed[0]).toMatch(/^resumed at step 2/);
  }, 120_000);
});
