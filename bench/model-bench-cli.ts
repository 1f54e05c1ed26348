/**
 * Command line of the model benchmark (Node): picks backends and workloads, runs
 * model-bench.ts on each, prints a markdown table and writes it (and JSON) to a results folder.
 * The entries differ only in how a backend is started: model.bench.ts (npm run bench:model)
 * uses the project's initBackend; model.gpu.ts is the self-contained bundle for the GPU machine.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendName, BackendReport } from '../src/model/backend';
import { parseT5Config } from '../src/model/t5/config';
import { trainMemoryBench, trainMemoryTable, TRAIN_PATHS, type TrainMemoryRow, type TrainPath } from './train-memory';
import {
  benchModel,
  linearLayoutBench,
  linearLayoutTable,
  markdownTable,
  matmulGflops,
  t5SmallWorkload,
  tinyWorkload,
  type BenchRow,
  type LinearLayoutRow,
  type Workload,
} from './model-bench';

export type StartBackend = (name: BackendName) => Promise<BackendReport>;

const USAGE = `usage: npm run bench:model -- [options]
  --backends LIST   comma-separated among cpu,wasm,webgpu (default: all three; webgpu through Dawn)
  --model NAME      t5-small | tiny (default: t5-small on a hardware GPU, tiny on cpu, wasm, SwiftShader)
  --matmul N        matmul baseline size (default: 4096 on a hardware GPU, 512 otherwise)
  --batches LIST    comma-separated questions per step, e.g. 1,4,8 (default 1); encoder tok/s at batch 1 only
  --reps N          timed repetitions per measurement, median reported (default 3)
  --out DIR         results folder (default results/); writes model-bench.md and model-bench.json
  --memory          instead: peak memory of one FiD train step per training path (bench/train-memory.ts),
                    t5-small's dimensions (random weights) at the shape below; writes train-memory.md/.json
  --passages K      (--memory) passages per question (default 2)
  --length L        (--memory) tokens per passage (default 128)
  --target T        (--memory) target tokens (default 32)
  --paths LIST      (--memory) among ${TRAIN_PATHS.join(',')} (default all)
  --checkpoint-rows N  (--memory) passages recomputed at a time by lean+ckpt (default 1)`;

/** SwiftShader is a CPU implementation of Vulkan: correct, but not a GPU to measure. */
function isHardwareGpu(report: BackendReport): boolean {
  return report.name === 'webgpu' && !/swiftshader/i.test(report.detail);
}

export async function runModelBench(startBackend: StartBackend, argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backends: { type: 'string', default: 'cpu,wasm,webgpu' },
      model: { type: 'string' },
      matmul: { type: 'string' },
      batches: { type: 'string', default: '1' },
      reps: { type: 'string', default: '3' },
      out: { type: 'string', default: 'results' },
      help: { type: 'boolean', default: false },
      memory: { type: 'boolean', default: false },
      passages: { type: 'string', default: '2' },
      length: { type: 'string', default: '128' },
      target: { type: 'string', default: '32' },
      paths: { type: 'string', default: TRAIN_PATHS.join(',') },
      'checkpoint-rows': { type: 'string', default: '1' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.memory) return runTrainMemory(startBackend, values as Required<typeof values>);
  const backends = values.backends!.split(',').map((s) => s.trim()) as BackendName[];
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
  const batches = values.batches!.split(',').map(Number);
  if (!batches.every((b) => Number.isInteger(b) && b >= 1)) throw new Error(`--batches must be positive integers, got ${values.batches}`);
  if (values.model && values.model !== 't5-small' && values.model !== 'tiny') throw new Error(`--model must be t5-small or tiny, got ${values.model}`);

  const rows: BenchRow[] = [];
  const linearRows: LinearLayoutRow[] = [];
  const skipped: string[] = [];
  for (const name of backends) {
    let report: BackendReport;
    try {
      report = await startBackend(name);
    } catch (e) {
      skipped.push(`${name}: ${(e as Error).message}`);
      console.error(`[bench] ${name} unavailable: ${(e as Error).message}`);
      continue;
    }
    const gpu = isHardwareGpu(report);
    const workload: Workload = values.model === 'tiny' || (!values.model && !gpu) ? tinyWorkload() : t5SmallWorkload();
    const matmulSize = values.matmul ? Number(values.matmul) : gpu ? 4096 : 512;
    console.error(`[bench] ${report.name} (${report.detail}): ${workload.model}, matmul ${matmulSize}, ${reps} reps`);
    const gflops = await matmulGflops(matmulSize, reps);
    for (const batch of batches) {
      const row = await benchModel(workload, { backend: report.name, adapter: report.detail, matmulSize, matmulGflops: gflops, reps, batch });
      rows.push(row);
      console.error(`[bench] ${JSON.stringify(row)}`);
    }
    // The Linear-layer product both ways: on wasm only untransposed 2-D products reach XNNPACK.
    const linear = await linearLayoutBench(report.name, gpu ? 16384 : 4096, gpu ? 512 : 128, gpu ? 2048 : 512, reps);
    linearRows.push(linear);
    console.error(`[bench] ${JSON.stringify(linear)}`);
    console.error(`[bench] tensors left: ${tf.memory().numTensors}`);
  }
  const table = `${markdownTable(rows)}\n\n${linearLayoutTable(linearRows)}`;
  const notes = skipped.length ? `\n\nSkipped: ${skipped.join('; ')}` : '';
  console.log(table + notes);
  mkdirSync(values.out!, { recursive: true });
  const stamp = new Date().toISOString();
  writeFileSync(join(values.out!, 'model-bench.md'), `# Model benchmark (${stamp})\n\n${table}${notes}\n`);
  writeFileSync(join(values.out!, 'model-bench.json'), JSON.stringify({ date: stamp, rows, linearRows, skipped }, null, 2) + '\n');
  return rows.length > 0 ? 0 : 1;
}

/** `--memory`: the training paths' peak memory side by side, per backend and batch size. */
async function runTrainMemory(startBackend: StartBackend, values: Record<string, string | boolean>): Promise<number> {
  const int = (name: string) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${values[name]}`);
    return n;
  };
  const paths = String(values.paths)
    .split(',')
    .map((p) => p.trim()) as TrainPath[];
  for (const p of paths) if (!TRAIN_PATHS.includes(p)) throw new Error(`--paths: unknown path ${p}`);
  const batches = String(values.batches).split(',').map(Number);
  const workload: Workload = {
    model: 't5-small dims (random)',
    config: parseT5Config({ model_type: 't5' }),
    passages: int('passages'),
    passageLength: int('length'),
    targetLength: int('target'),
    newTokens: 0,
  };
  const rows: TrainMemoryRow[] = [];
  for (const name of String(values.backends)
    .split(',')
    .map((s) => s.trim()) as BackendName[]) {
    const report = await startBackend(name);
    for (const batch of batches) {
      const out = await trainMemoryBench(workload, { backend: report.name, batch, reps: int('reps'), paths, checkpointRows: int('checkpoint-rows') });
      out.forEach((r) => console.error(`[bench] ${JSON.stringify(r)}`));
      rows.push(...out);
    }
  }
  const table = trainMemoryTable(rows);
  console.log(table);
  const dir = String(values.out);
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString();
  writeFileSync(join(dir, 'train-memory.md'), `# Training-step peak memory (${stamp})\n\n${table}\n`);
  writeFileSync(join(dir, 'train-memory.json'), JSON.stringify({ date: stamp, rows }, null, 2) + '\n');
  return 0;
}
