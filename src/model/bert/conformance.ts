/**
 * Compares this BERT/Contriever implementation with a Hugging Face reference fixture (the
 * hf-reference `bert-tiny` format: config.json, model.safetensors, expected.safetensors,
 * expected.json, grads.safetensors). Sizes are read from the files, so any fixture of this format
 * works. Pure TF.js: no Node APIs, so it runs on whatever backend is active (cpu, wasm, webgpu).
 */
import * as tf from '@tensorflow/tfjs-core';
import { innerProductScores, meanPool } from '../contriever';
import { inBatchContrastiveLoss } from '../losses';
import { parseSafetensors, readTensor, type ParsedSafetensors } from '../safetensors';
import { bertParameterShapes, canonicalBertName, parseBertConfig } from './config';
import { bertEncode } from './model';
import { maxRelativeError, relativeL2Error } from '../numerics';

export interface BertFixtureFiles {
  /** Parsed config.json. */
  readonly config: unknown;
  readonly model: Uint8Array;
  readonly expected: Uint8Array;
  /** Parsed expected.json (contrastive_loss, temperature, targets). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed expected.json of an HF fixture: many shapes, read field by field
  readonly expectedJson: any;
  readonly grads: Uint8Array;
}

export interface BertTolerances {
  /** Bound on max|a-b| / max|b| for forward tensors (1e-4 on cpu). */
  readonly forward: number;
  /** Bound on the relative L2 error of every parameter gradient (1e-3 on cpu). */
  readonly grads: number;
}

export const CPU_TOLERANCES: BertTolerances = { forward: 1e-4, grads: 1e-3 };

export interface BertConformanceResult {
  /** max|a-b| / max|b| per compared output (hidden states, embeddings, scores, loss). */
  max_rel_err: Record<string, number>;
  /** The worst relative L2 error over all parameter gradients. */
  grad_rel_l2: number;
  worst_grad: string;
  ok_forward: boolean;
  ok_grads: boolean;
}

function floatData(file: ParsedSafetensors, name: string): { shape: number[]; values: Float32Array } {
  if (!file.tensors.has(name)) throw new Error(`fixture: tensor "${name}" is missing`);
  const { shape, data } = readTensor(file, name);
  return { shape, values: data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>) };
}

function intTensor(file: ParsedSafetensors, name: string): tf.Tensor2D {
  if (!file.tensors.has(name)) throw new Error(`fixture: tensor "${name}" is missing`);
  const { shape, data } = readTensor(file, name);
  if (shape.length !== 2) throw new Error(`fixture: "${name}" should be 2-D, got [${shape}]`);
  return tf.tensor2d(Int32Array.from(data as ArrayLike<number>), shape as [number, number], 'int32');
}

function l2(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i] ** 2;
  return Math.sqrt(s);
}

/**
 * float32 rounding relative to the global gradient norm: the floor for analytically-zero gradients.
 * The attention key bias cannot change a softmax over keys (it adds the same amount to every score
 * of a query), so its reference gradient holds only float32 noise (~1e-9), and dividing by that
 * would compare noise with noise.
 */
const GRAD_NOISE_FLOOR = 1e-6;

/**
 * Runs the fixture's queries and passages through one BERT encoder (the fixture ties both sides),
 * compares hidden states, Contriever embeddings, scores and the in-batch contrastive loss, then
 * d(loss)/d(parameter) for every parameter in grads.safetensors.
 */
export async function checkBertFixture(files: BertFixtureFiles, tolerances: BertTolerances = CPU_TOLERANCES): Promise<BertConformanceResult> {
  const config = parseBertConfig(files.config);
  const model = parseSafetensors(files.model, 'model.safetensors');
  const expected = parseSafetensors(files.expected, 'expected.safetensors');
  const grads = parseSafetensors(files.grads, 'grads.safetensors');
  const temperature: number = files.expectedJson?.temperature ?? 0.05;
  const targets: number[] = files.expectedJson?.targets;
  if (!Array.isArray(targets)) throw new Error('expected.json: "targets" must be an array of positive-passage indices');
  if (typeof files.expectedJson?.contrastive_loss !== 'number') throw new Error('expected.json: "contrastive_loss" must be a number');

  const run = conformanceRun++;
  const shapes = bertParameterShapes(config);
  const params = new Map<string, tf.Variable>();
  const owned: tf.Tensor[] = [];
  try {
    for (const tensorName of model.tensors.keys()) {
      const name = canonicalBertName(tensorName);
      if (name === undefined || !shapes.has(name)) continue;
      const { shape, values } = floatData(model, tensorName);
      if (!tf.util.arraysEqual(shape, shapes.get(name)!)) {
        throw new Error(`model.safetensors: "${tensorName}" has shape [${shape}] but the config implies [${shapes.get(name)}]`);
      }
      const initial = tf.tensor(values, shape, 'float32');
      params.set(name, tf.variable(initial, true, `bert-conformance-${run}/${name}`));
      initial.dispose(); // the variable holds its own reference to the data
    }
    for (const name of shapes.keys()) if (!params.has(name)) throw new Error(`model.safetensors: parameter "${name}" is missing`);
    const get = (name: string) => params.get(name)!;

    const q = { inputIds: intTensor(expected, 'q_input_ids'), attentionMask: intTensor(expected, 'q_attention_mask') };
    const p = { inputIds: intTensor(expected, 'p_input_ids'), attentionMask: intTensor(expected, 'p_attention_mask') };
    owned.push(q.inputIds, q.attentionMask, p.inputIds, p.attentionMask);

    const outputs = tf.tidy(() => {
      const qHidden = bertEncode(config, get, q);
      const pHidden = bertEncode(config, get, p);
      const qEmb = meanPool(qHidden, q.attentionMask);
      const pEmb = meanPool(pHidden, p.attentionMask);
      return {
        q_last_hidden_state: qHidden,
        p_last_hidden_state: pHidden,
        q_embedding: qEmb,
        p_embedding: pEmb,
        scores: tf.div(innerProductScores(qEmb, pEmb), temperature),
        contrastive_loss: inBatchContrastiveLoss(qEmb, pEmb, targets, temperature),
      };
    });
    owned.push(...Object.values(outputs));

    const max_rel_err: Record<string, number> = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      const actual = await tensor.data();
      const reference = name === 'contrastive_loss' ? [files.expectedJson.contrastive_loss as number] : floatData(expected, name).values;
      max_rel_err[name] = maxRelativeError(actual as Float32Array, reference);
    }

    const { value: lossValue, grads: computed } = tf.variableGrads(() => {
      const qEmb = meanPool(bertEncode(config, get, q), q.attentionMask);
      const pEmb = meanPool(bertEncode(config, get, p), p.attentionMask);
      return inBatchContrastiveLoss(qEmb, pEmb, targets, temperature);
    }, [...params.values()]);
    const byName = new Map<string, tf.Tensor>();
    for (const [name, v] of params) byName.set(name, computed[v.name]);
    owned.push(lossValue, ...Object.values(computed));

    const references = new Map<string, Float32Array>();
    for (const tensorName of grads.tensors.keys()) {
      const name = canonicalBertName(tensorName);
      if (name !== undefined && shapes.has(name)) references.set(name, floatData(grads, tensorName).values);
    }
    if (references.size === 0) throw new Error('grads.safetensors: no BERT parameter gradients found');
    const globalNorm = Math.sqrt([...references.values()].reduce((s, g) => s + l2(g) ** 2, 0));

    let grad_rel_l2 = 0;
    let worst_grad = '';
    for (const [name, reference] of references) {
      const actual = (await byName.get(name)!.data()) as Float32Array;
      const err = relativeL2Error(actual, reference, GRAD_NOISE_FLOOR * globalNorm);
      if (err > grad_rel_l2 || worst_grad === '') {
        grad_rel_l2 = err;
        worst_grad = name;
      }
    }

    return {
      max_rel_err,
      grad_rel_l2,
      worst_grad,
      ok_forward: Object.values(max_rel_err).every((e) => e < tolerances.forward),
      ok_grads: grad_rel_l2 < tolerances.grads,
    };
  } finally {
    for (const t of owned) t.dispose();
    for (const v of params.values()) v.dispose();
  }
}

/** Keeps variable names unique across calls (tfjs registers variables globally by name). */
let conformanceRun = 0;
