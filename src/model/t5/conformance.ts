/**
 * Compares this T5 / Fusion-in-Decoder implementation with a Hugging Face reference fixture (the
 * hf-reference T5 format: config.json, model.safetensors, expected.safetensors, expected.json,
 * grads.safetensors). Every size (batch, lengths, passages, layers, vocabulary) is read from the
 * files, so fixtures of any size and config work. Pure TF.js, no Node APIs: it runs on whichever
 * backend is active (cpu in vitest, webgpu in the browser suite).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParameterStore } from '../params';
import { parseSafetensors, readTensor, type ParsedSafetensors } from '../safetensors';
import { parseT5Config, t5ParameterShapes } from './config';
import { fidEncode, fidForward } from './fid';
import { greedyGenerate } from './generate';
import { T5Model } from './model';
import { maxRelativeError, relativeL2Error } from '../numerics';

export interface T5FixtureFiles {
  /** Parsed config.json. */
  readonly config: unknown;
  readonly model: Uint8Array;
  readonly expected: Uint8Array;
  /** Parsed expected.json: loss, fid_loss, fid_greedy_ids. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed expected.json of an HF fixture: many shapes, read field by field
  readonly expectedJson: any;
  readonly grads: Uint8Array;
}

export interface T5Tolerances {
  /** Bound on max|a-b| / max|b| of every forward output (default 1e-4, float32 on cpu). */
  readonly forward?: number;
  /** Bound on the relative L2 error of every parameter gradient (default 1e-3). */
  readonly grads?: number;
}

export interface T5ConformanceResult {
  /**
   * max|a-b| / max|b| per output: encoder_last_hidden_state, logits, loss, fid_encoder_hidden,
   * fid_logits, fid_loss, fid_cross_attention_{layer}; fid_greedy_ids is the fraction of
   * differing token ids (0 when equal).
   */
  max_rel_err: Record<string, number>;
  /** Worst relative L2 error ||a-b|| / ||b|| over all parameter gradients. */
  grad_rel_l2: number;
  worst_grad: string;
  ok_forward: boolean;
  ok_grads: boolean;
}

function floats(file: ParsedSafetensors, name: string, where: string): Float32Array {
  if (!file.tensors.has(name)) throw new Error(`${where}: tensor "${name}" is missing`);
  const { data } = readTensor(file, name);
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

function ints(file: ParsedSafetensors, name: string): tf.Tensor2D {
  if (!file.tensors.has(name)) throw new Error(`expected.safetensors: tensor "${name}" is missing`);
  const { shape, data } = readTensor(file, name);
  if (shape.length !== 2) throw new Error(`expected.safetensors: "${name}" should be 2-D, got [${shape}]`);
  return tf.tensor2d(Int32Array.from(data as ArrayLike<number>), shape as [number, number], 'int32');
}

/** Model parameters from the checkpoint, checked against the config's shape table. */
function loadParameters(modelFile: ParsedSafetensors, shapes: Map<string, number[]>): ParameterStore {
  for (const [name, shape] of shapes) {
    const info = modelFile.tensors.get(name);
    if (!info) throw new Error(`model.safetensors: parameter "${name}" is missing`);
    if (!tf.util.arraysEqual([...info.shape], shape)) {
      throw new Error(`model.safetensors: "${name}" has shape [${info.shape}] but the config implies [${shape}]`);
    }
  }
  // Only the parameters the config names (embed_tokens copies of shared.weight are skipped).
  return ParameterStore.fromSafetensors(modelFile, (name) => shapes.has(name));
}

/**
 * Runs the fixture through T5Model and the FiD functions and compares: the padded batch's encoder
 * states, logits and loss; FiD fused encoder states, logits, loss, per-layer cross-attention and
 * greedy ids; and d(loss)/d(parameter) for every parameter in grads.safetensors.
 */
export async function checkT5Fixture(files: T5FixtureFiles, tolerances: T5Tolerances = {}): Promise<T5ConformanceResult> {
  const forwardBound = tolerances.forward ?? 1e-4;
  const gradBound = tolerances.grads ?? 1e-3;
  const config = parseT5Config(files.config);
  const expected = parseSafetensors(files.expected, 'expected.safetensors');
  const gradsFile = parseSafetensors(files.grads, 'grads.safetensors');
  const json = files.expectedJson;
  for (const field of ['loss', 'fid_loss'] as const) {
    if (typeof json?.[field] !== 'number') throw new Error(`expected.json: "${field}" must be a number`);
  }
  if (!Array.isArray(json.fid_greedy_ids) || json.fid_greedy_ids.length < 2) {
    throw new Error('expected.json: "fid_greedy_ids" must list the start token and at least one generated id');
  }
  const shapes = t5ParameterShapes(config);
  const store = loadParameters(parseSafetensors(files.model, 'model.safetensors'), shapes);
  const model = new T5Model(config, store);
  const owned: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  try {
    const max_rel_err: Record<string, number> = {};
    const compare = async (name: string, tensor: tf.Tensor, reference: ArrayLike<number>) => {
      max_rel_err[name] = maxRelativeError((await tensor.data()) as Float32Array, reference);
    };

    // The padded batch.
    const ids = keep(ints(expected, 'enc_input_ids'));
    const mask = keep(ints(expected, 'enc_attention_mask'));
    const labels = keep(ints(expected, 'labels'));
    const plain = model.forward(ids, mask, labels);
    owned.push(plain.encoderHidden, plain.logits, plain.loss);
    await compare('encoder_last_hidden_state', plain.encoderHidden, floats(expected, 'encoder_last_hidden_state', 'expected.safetensors'));
    await compare('logits', plain.logits, floats(expected, 'logits', 'expected.safetensors'));
    await compare('loss', plain.loss, [json.loss]);

    // Fusion-in-Decoder: k passages of one (or more) examples.
    const fidIds = keep(ints(expected, 'fid_input_ids'));
    const fidMask = keep(ints(expected, 'fid_attention_mask'));
    const fidLabels = keep(ints(expected, 'fid_labels'));
    const numPassages = fidIds.shape[0] / fidLabels.shape[0];
    const fid = fidForward(model, fidIds, fidMask, numPassages, fidLabels, { crossAttentions: true });
    owned.push(fid.encoder.hidden, fid.encoder.mask, fid.logits, fid.loss, ...fid.crossAttentions!);
    await compare('fid_encoder_hidden', fid.encoder.hidden, floats(expected, 'fid_encoder_hidden', 'expected.safetensors'));
    await compare('fid_logits', fid.logits, floats(expected, 'fid_logits', 'expected.safetensors'));
    await compare('fid_loss', fid.loss, [json.fid_loss]);
    for (let layer = 0; layer < config.num_decoder_layers; layer++) {
      await compare(`fid_cross_attention_${layer}`, fid.crossAttentions![layer], floats(expected, `fid_cross_attention_${layer}`, 'expected.safetensors'));
    }

    // Greedy ids over the fused encoding (the reference suppresses EOS until the last token).
    const reference: number[] = json.fid_greedy_ids;
    const newTokens = reference.length - 1;
    const fused = fidEncode(model, fidIds, fidMask, numPassages);
    owned.push(fused.hidden, fused.mask);
    const [greedy] = await greedyGenerate(model, fused.hidden, fused.mask, { maxNewTokens: newTokens, minNewTokens: newTokens, startTokenId: reference[0] });
    const mismatches = reference.filter((id, i) => greedy[i] !== id).length + Math.max(0, greedy.length - reference.length);
    max_rel_err.fid_greedy_ids = mismatches / reference.length;

    // Every parameter gradient of the padded batch's loss.
    const variables = [...store.entries()];
    const { value, grads } = tf.variableGrads(
      () => model.loss(ids, mask, labels),
      variables.map(([, v]) => v),
    );
    owned.push(value, ...Object.values(grads));
    let grad_rel_l2 = 0;
    let worst_grad = '';
    const byVariable = new Map(variables.map(([name, v]) => [name, grads[v.name]]));
    for (const name of gradsFile.tensors.keys()) {
      if (!shapes.has(name)) continue; // e.g. embed_tokens aliases: their gradient is shared.weight's
      const ours = byVariable.get(name);
      const err = ours ? relativeL2Error((await ours.data()) as Float32Array, floats(gradsFile, name, 'grads.safetensors')) : Infinity;
      if (err > grad_rel_l2 || worst_grad === '') {
        grad_rel_l2 = err;
        worst_grad = name;
      }
    }
    if (worst_grad === '') throw new Error('grads.safetensors: no T5 parameter gradients found');

    return {
      max_rel_err,
      grad_rel_l2,
      worst_grad,
      ok_forward: Object.values(max_rel_err).every((e) => e < forwardBound),
      ok_grads: grad_rel_l2 < gradBound,
    };
  } finally {
    tf.dispose(owned);
    store.dispose();
  }
}
