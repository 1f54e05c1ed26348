/**
 * Pretraining on the lent GPU (WebGPU via Dawn), as one self-contained bundle:
 *   npx tsx scripts/pretrain.ts --config configs/pretrain/demo.json --work .pretrain/demo --prepare-only
 *   ../shared/gpu/pack.sh bench/pretrain.gpu.ts && cp -r .pretrain/demo configs/pretrain/demo.json .gpu/
 *   device run (carry .gpu): bash .gpu/run.sh .gpu/demo.json .gpu/demo $OUT 8
 * Arguments: config, work folder, output folder, minutes [, folder of exported reader/ + retriever/ to
 * start from]. The exported model.safetensors and
 * config.json of reader/ and retriever/ and the log are written under the output folder (the
 * tokenizer files are already in the work folder here).
 */
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { installNodeWebGpu } from '../src/platform/node/webgpu';
import { parsePretrainConfig } from '../src/pretrain/config';
import { runPretraining } from '../src/platform/node/pretrain-runner';
import { readFileSync } from 'node:fs';

const [configPath, workDir, outDir, minutes, initFrom] = process.argv.slice(2);
const config = parsePretrainConfig(JSON.parse(readFileSync(configPath, 'utf8')));
await installNodeWebGpu();
if (!(await tf.setBackend('webgpu'))) throw new Error('webgpu backend did not start');
await tf.ready();
mkdirSync(outDir, { recursive: true });
const log = (line: string) => {
  console.log(line);
  appendFileSync(join(outDir, 'pretrain.log'), line + '\n');
};
const exportDir = '/tmp/pretrain-export';
await runPretraining(config, { workDir, exportDir, maxMinutes: Number(minutes ?? 8), initFrom, backend: 'webgpu (Dawn, NVIDIA)', log });
for (const side of ['reader', 'retriever']) {
  mkdirSync(join(outDir, side), { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(exportDir, side, f), join(outDir, side, f));
}
