/**
 * The reader's (T5 Fusion-in-Decoder) inputs for a pretraining step: one row per (example,
 * retrieved passage), `question part + passage + EOS`, and the example's target as labels. Which
 * part of a long passage a row holds is the windowing policy (src/pretrain/windows.ts): the source
 * passage of a cloze question shows its answer and that of a masked span its first span, so the
 * reader learns to read and copy from passages rather than to recall.
 */
import * as tf from '@tensorflow/tfjs-core';
import { allowedPositions } from '../model/t5/copy-attention';
import { IGNORE_INDEX } from '../model/t5/loss';
import type { PretrainConfig } from './config';
import { copyAlignment } from './copy-alignment';
import type { PreparedExample, PretrainData } from './data';
import type { Rng } from './rng';
import { answerWindow, randomWindow, spanWindow } from './windows';

export interface ReaderInputs {
  /** [B·k, L] token ids, example b's passage j in row b·k + j. */
  readonly ids: tf.Tensor2D;
  readonly mask: tf.Tensor2D;
  /** [B, T] target ids, IGNORE_INDEX after the target. */
  readonly labels: tf.Tensor2D;
  /** [B, T, k·L] copy alignments of each target token (only with copyAttentionWeight > 0). */
  readonly copyAllowed?: tf.Tensor3D;
}

/** The FiD batch of `examples` over their `retrieved` passages; `rng` draws the random windows. */
export function readerInputs(
  config: PretrainConfig,
  data: PretrainData,
  rng: Rng,
  examples: readonly PreparedExample[],
  retrieved: readonly number[][],
): ReaderInputs {
  const { readerMaxLength: L, targetMaxLength: T, passagesPerQuestion: k } = config;
  const { readerPad, readerEos } = data.special;
  const ids = new Int32Array(examples.length * k * L).fill(readerPad);
  const mask = new Int32Array(examples.length * k * L);
  const labels = new Int32Array(examples.length * T).fill(IGNORE_INDEX);
  const alignments: number[][][] = [];
  examples.forEach((ex, b) => {
    const rows: number[][] = [];
    retrieved[b].forEach((p, j) => {
      const source = p === ex.passage && config.readerPassageWindow > 0;
      const passageIds =
        source && ex.kind === 'cloze'
          ? answerWindow(data.passages[p].readerIds, ex.target, config.readerPassageWindow, rng)
          : source && ex.kind === 'mlm' && ex.anchor
            ? spanWindow(data.passages[p].readerIds, ex.anchor, config.readerPassageWindow)
            : config.windowEveryPassage && config.readerPassageWindow > 0
              ? randomWindow(data.passages[p].readerIds, config.readerPassageWindow, rng)
              : data.passages[p].readerIds;
      const row = [...ex.readerQuery, ...passageIds].slice(0, L - 1);
      row.push(readerEos);
      ids.set(row, (b * k + j) * L);
      mask.fill(1, (b * k + j) * L, (b * k + j) * L + row.length);
      rows.push(row);
    });
    const target = ex.target.length > T ? [...ex.target.slice(0, T - 1), readerEos] : ex.target;
    labels.set(target, b * T);
    if (config.copyAttentionWeight > 0) {
      const queryLength = Math.min(ex.readerQuery.length, L - 1);
      alignments.push(
        copyAlignment(
          target,
          rows.map((r) => ({ ids: r, passageStart: queryLength, passageEnd: r.length - 1 })),
          ex.readerQuery,
          L,
        ),
      );
    }
  });
  return {
    ids: tf.tensor2d(ids, [examples.length * k, L], 'int32'),
    mask: tf.tensor2d(mask, [examples.length * k, L], 'int32'),
    labels: tf.tensor2d(labels, [examples.length, T], 'int32'),
    copyAllowed: config.copyAttentionWeight > 0 ? tf.tensor3d(allowedPositions(alignments, T, k * L), [examples.length, T, k * L]) : undefined,
  };
}
