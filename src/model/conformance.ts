/**
 * Conformance against a Hugging Face reference fixture folder (the format of
 * ../shared/fixtures/hf-reference: config.json, model.safetensors, expected.safetensors,
 * expected.json, grads.safetensors; pytorch_model.bin may stand in for model.safetensors).
 * Dispatches on the config's model_type to the model's own checker. No Node APIs: the CLI, the vitest suite and the browser suite all call this.
 */
import { checkBertFixture } from './bert/conformance';
import { checkT5Fixture } from './t5/conformance';
import { torchBinToSafetensors } from './checkpoint/torch-bin';

export interface FixtureFiles {
  config: unknown;
  model: Uint8Array;
  expected: Uint8Array;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed expected.json of an HF fixture: many shapes, read field by field
  expectedJson: any;
  grads: Uint8Array;
}

export interface Tolerances {
  /** Bound on max|a-b| / max|b| for every forward tensor. */
  forward: number;
  /** Bound on the relative L2 error of every parameter gradient. */
  grads: number;
}

/** The bounds float32 allows on the CPU backend (fixture README); GPU kernels reorder sums, so 10x looser. */
export function defaultTolerances(backend: string): Tolerances {
  return backend === 'webgpu' ? { forward: 1e-3, grads: 1e-2 } : { forward: 1e-4, grads: 1e-3 };
}

export interface ConformanceReport {
  model: string;
  kind: 't5' | 'bert';
  backend: string;
  max_rel_err: Record<string, number>;
  grad_rel_l2: number;
  worst_grad: string;
  tolerances: Tolerances;
  ok: boolean;
}

export const FIXTURE_FILES = ['config.json', 'model.safetensors', 'expected.safetensors', 'expected.json', 'grads.safetensors'] as const;
/** Read in place of model.safetensors when a folder has none (weights as `torch.save` wrote them). */
export const FIXTURE_TORCH_WEIGHTS = 'pytorch_model.bin';

export type FixtureFileName = (typeof FIXTURE_FILES)[number] | typeof FIXTURE_TORCH_WEIGHTS;

/** Builds FixtureFiles from raw file bytes (as read from disk or fetched); names what is missing or unreadable. */
export function fixtureFilesFromBytes(read: (name: FixtureFileName) => Uint8Array | undefined, where: string): FixtureFiles {
  const get = (name: FixtureFileName): Uint8Array => {
    const b = read(name);
    if (!b) {
      const alt = name === 'model.safetensors' ? ` or ${FIXTURE_TORCH_WEIGHTS}` : '';
      throw new Error(
        `${where}: ${name}${alt} is missing (a fixture folder holds ${FIXTURE_FILES.join(', ')}; ${FIXTURE_TORCH_WEIGHTS} may stand in for model.safetensors)`,
      );
    }
    return b;
  };
  const model = (): Uint8Array => {
    const safetensors = read('model.safetensors');
    if (safetensors) return safetensors;
    const torch = read(FIXTURE_TORCH_WEIGHTS);
    return torch ? torchBinToSafetensors(torch, `${where}/${FIXTURE_TORCH_WEIGHTS}`) : get('model.safetensors');
  };
  const json = (name: 'config.json' | 'expected.json'): unknown => {
    try {
      return JSON.parse(new TextDecoder().decode(get(name)));
    } catch (e) {
      if ((e as Error).message.includes('is missing')) throw e;
      throw new Error(`${where}: ${name} is not valid JSON (${(e as Error).message})`);
    }
  };
  return {
    config: json('config.json'),
    expectedJson: json('expected.json'),
    model: model(),
    expected: get('expected.safetensors'),
    grads: get('grads.safetensors'),
  };
}

export async function checkFixture(files: FixtureFiles, name: string, backend: string, tolerances = defaultTolerances(backend)): Promise<ConformanceReport> {
  const modelType = (files.config as { model_type?: unknown } | null)?.model_type;
  let kind: 't5' | 'bert';
  if (modelType === 't5') kind = 't5';
  else if (modelType === 'bert') kind = 'bert';
  else throw new Error(`${name}: unsupported model type ${JSON.stringify(modelType)} in config.json (expected "t5" or "bert")`);
  const check = kind === 't5' ? checkT5Fixture : checkBertFixture;
  const r = await check(files, tolerances);
  return {
    model: name,
    kind,
    backend,
    max_rel_err: r.max_rel_err,
    grad_rel_l2: r.grad_rel_l2,
    worst_grad: r.worst_grad,
    tolerances,
    ok: r.ok_forward && r.ok_grads,
  };
}
