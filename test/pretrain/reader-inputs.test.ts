import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { parsePretrainConfig } from '../../src/pretrain/config';
import type { PretrainData } from '../../src/pretrain/data';
import { readerInputs } from '../../src/pretrain/reader-inputs';
import { Rng } from '../../src/pretrain/rng';
import { Pretrainer } from '../../src/pretrain/trainer';
import { config, tinyPretrainData } from './tiny-pretrain';

let data: PretrainData;

beforeAll(async () => {
  await initBackend('cpu');
  data = tinyPretrainData();
});

describe('every passage as a window (windowEveryPassage)', () => {
  it('with it, no reader row of a cloze example is longer than its question plus the window; without it, the other passages enter whole', async () => {
    const cloze = data.examples.filter((e) => e.kind === 'cloze');
    const window = 16;
    const longest = async (windowEveryPassage: boolean) => {
      const trainer = Pretrainer.create(parsePretrainConfig({ ...config, readerPassageWindow: window, windowEveryPassage, readerMaxLength: 112 }), data);
      try {
        await trainer.trainStep(); // builds the passage index
        const inputs = readerInputs(trainer.config, data, new Rng(config.seed), cloze, await trainer.passageIndex.retrieve(cloze));
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
