/** Loads the hf-reference T5 fixtures for the tests in this folder. */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { ParameterStore } from '../../../src/model/params';
import { parseSafetensors, readTensor, type ParsedSafetensors } from '../../../src/model/safetensors';
import { parseT5Config } from '../../../src/model/t5/config';
import { T5Model } from '../../../src/model/t5/model';

export const T5_FIXTURES = ['t5-tiny-gated', 't5-tiny-relu'] as const;

function file(name: string, f: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../../../../shared/fixtures/hf-reference/${name}/${f}`, import.meta.url)));
}

export function readT5Fixture(name: string) {
  const json = (f: string) => JSON.parse(new TextDecoder().decode(file(name, f)));
  return {
    config: json('config.json'),
    model: file(name, 'model.safetensors'),
    expected: file(name, 'expected.safetensors'),
    expectedJson: json('expected.json'),
    grads: file(name, 'grads.safetensors'),
  };
}

/** The fixture's model over a fresh ParameterStore (dispose the store when done). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed expected.json of an HF fixture: many shapes, read field by field
export function loadT5Fixture(name: string): { model: T5Model; store: ParameterStore; expected: ParsedSafetensors; expectedJson: any } {
  const files = readT5Fixture(name);
  const store = ParameterStore.fromSafetensors(files.model);
  return { model: new T5Model(parseT5Config(files.config), store), store, expected: parseSafetensors(files.expected), expectedJson: files.expectedJson };
}

/** An integer tensor of expected.safetensors (ids, masks, labels). */
export function intInput(expected: ParsedSafetensors, name: string): tf.Tensor2D {
  const { shape, data } = readTensor(expected, name);
  return tf.tensor2d(Int32Array.from(data as ArrayLike<number>), shape as [number, number], 'int32');
}
