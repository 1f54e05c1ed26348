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

describe('masked spans with their source passage (mlmWithSource)', () => {
  it("puts each masked-span example's own passage among its k passages only when asked, as a window holding the first span", async () => {
    const mlm = data.examples.filter((e) => e.kind === 'mlm');
    for (const withSource of [false, true]) {
      // Inputs long enough for a masked window's query (~55 tokens) and the 40-token source window.
      const trainer = Pretrainer.create(parsePretrainConfig({ ...config, mlmWithSource: withSource, readerPassageWindow: 40, readerMaxLength: 112 }), data);
      try {
        await trainer.trainStep(); // builds the passage index
        const retrieved = await trainer.passageIndex.retrieve(mlm);
        retrieved.forEach((r, i) => {
          expect(r).toHaveLength(config.passagesPerQuestion);
          expect(r.includes(mlm[i].passage)).toBe(withSource);
        });
        if (withSource) {
          const inputs = readerInputs(trainer.config, data, new Rng(config.seed), mlm, retrieved);
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
