import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../../src/model/safetensors';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = join(ROOT, '../shared/fixtures/hf-reference');
const work = mkdtempSync(join(tmpdir(), 'corag-conformance-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function conformance(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/conformance.ts'), ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('npm run conformance', () => {
  it.each(['t5-tiny-gated', 't5-tiny-relu', 'bert-tiny'])('prints one JSON line with ok=true for the %s reference fixture', async (name) => {
    const { code, stdout } = await conformance(join(FIXTURES, name), '--backend', 'cpu');
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0]);
    expect(report).toMatchObject({ model: name, ok: true, backend: 'cpu' });
    expect(report.grad_rel_l2).toBeLessThan(1e-3);
    for (const err of Object.values(report.max_rel_err as Record<string, number>)) expect(err).toBeLessThan(1e-4);
    expect(code).toBe(0);
  });

  it.each(
    ['t5-tiny-gated', 't5-tiny-relu', 'bert-tiny'].flatMap((name) => [
      [name, 'pytorch_model.bin'],
      [name, 'pytorch_model.legacy.bin'],
    ]),
  )('passes for %s with only %s (saved as pytorch_model.bin) in place of model.safetensors', async (name, weights) => {
    const dir = join(work, `torch-${name}-${weights}`);
    mkdirSync(dir);
    for (const file of ['config.json', 'expected.safetensors', 'expected.json', 'grads.safetensors']) copyFileSync(join(FIXTURES, name, file), join(dir, file));
    copyFileSync(join(FIXTURES, name, weights), join(dir, 'pytorch_model.bin'));
    const { code, stdout, stderr } = await conformance(dir, '--backend', 'cpu');
    expect(stderr).not.toContain('conformance:');
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ kind: name.startsWith('t5') ? 't5' : 'bert', ok: true, backend: 'cpu' });
    expect(report.grad_rel_l2).toBeLessThan(1e-3);
    for (const err of Object.values(report.max_rel_err as Record<string, number>)) expect(err).toBeLessThan(1e-4);
    expect(code).toBe(0);
  });

  it('exits 2 naming the file when pytorch_model.bin is hostile', async () => {
    const dir = join(work, 'hostile-bin');
    mkdirSync(dir);
    for (const file of ['config.json', 'expected.safetensors', 'expected.json', 'grads.safetensors'])
      copyFileSync(join(FIXTURES, 'bert-tiny', file), join(dir, file));
    // protocol 2: GLOBAL os.system, ("ls",), REDUCE, STOP: refused before anything runs.
    writeFileSync(join(dir, 'pytorch_model.bin'), Uint8Array.from([0x80, 2, ...Buffer.from('cos\nsystem\n'), 0x58, 2, 0, 0, 0, 0x6c, 0x73, 0x85, 0x52, 0x2e]));
    const { code, stdout, stderr } = await conformance(dir);
    expect(stdout).toBe('');
    expect(stderr).toContain('pytorch_model.bin: refused pickle global "os.system"');
    expect(code).toBe(2);
  });

  it('exits 1 with ok=false when a gradient in a folder it has never seen breaks the bound', async () => {
    const dir = join(work, 'perturbed-grad');
    cpSync(join(FIXTURES, 't5-tiny-relu'), dir, { recursive: true });
    const grads = parseSafetensors(readFileSync(join(dir, 'grads.safetensors')));
    const out = new Map<string, TensorToWrite>();
    for (const name of grads.tensors.keys()) {
      const { shape, data } = readTensor(grads, name);
      const copy = Float32Array.from(data as Float32Array);
      if (name === 'decoder.block.1.layer.0.SelfAttention.v.weight') for (let i = 0; i < copy.length; i++) copy[i] *= 1.01;
      out.set(name, { dtype: 'F32', shape, data: copy });
    }
    writeFileSync(join(dir, 'grads.safetensors'), writeSafetensors(out));
    const { code, stdout } = await conformance(dir);
    const report = JSON.parse(stdout);
    expect(report.ok).toBe(false);
    expect(report.worst_grad).toBe('decoder.block.1.layer.0.SelfAttention.v.weight');
    expect(report.grad_rel_l2).toBeGreaterThan(5e-3);
    expect(code).toBe(1);
  });

  it('exits 2 naming the missing file when a folder is incomplete', async () => {
    const dir = join(work, 'incomplete');
    cpSync(join(FIXTURES, 'bert-tiny'), dir, { recursive: true });
    rmSync(join(dir, 'expected.safetensors'));
    const { code, stderr, stdout } = await conformance(dir);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/expected\.safetensors is missing/);
    expect(code).toBe(2);
  });

  it('exits 2 on an unsupported model type', async () => {
    const dir = join(work, 'gpt2');
    cpSync(join(FIXTURES, 'bert-tiny'), dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2' }));
    const { code, stderr } = await conformance(dir);
    expect(stderr).toMatch(/unsupported model type "gpt2"/);
    expect(code).toBe(2);
  });
});
