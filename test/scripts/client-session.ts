/**
 * What the headless-client tests (scripts/client.ts) share: a session of the tiny fixture models
 * with global version 0 and one passage in its store (contributed by an organiser's client, which
 * is selected in rounds too and never uploads), a questions file, and the CLI as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FederatedCoragClient } from '../../src/corag/federated-client';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoragClient } from '../../src/federated/client';
import { waitFor } from '../server/coordinator-process';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ClientSession {
  readonly sessionId: string;
  readonly joinCode: string;
  readonly adminToken: string;
  /** A JSON-lines file with the one question the CLI trains on. */
  readonly questions: string;
}

/** Creates the session through `url` (no automatic rounds; one update closes a round). */
export async function prepareClientSession(url: string, bundle: ModelBundle, name: string, dir: string): Promise<ClientSession> {
  const anon = new CoragClient(url);
  const created = await anon.createSession({
    name,
    models: { reader: 'corag/tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundle.embeddingDim },
    training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
    roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: 300, autoStart: false },
    trainedPrefixes: ['reader.'],
    // Coordinator processes have no copy of the tiny retriever to re-embed samples with.
    passages: { embeddingCheck: 'off' },
  });
  const sessionId = created.session.id;
  await anon.withToken(created.adminToken).uploadModel(sessionId, await bundle.exportGlobal());
  const contributor = await FederatedCoragClient.join(anon, created.joinCode, 'organiser', { bundle });
  await contributor.loadGlobal(0);
  await contributor.contributePassages([{ title: 'alice', text: 'alice lives in paris.' }]);
  const questions = join(dir, 'questions.jsonl');
  writeFileSync(questions, `${JSON.stringify({ question: 'where does alice live?', answers: ['paris'] })}\n`);
  return { sessionId, joinCode: created.joinCode, adminToken: created.adminToken, questions };
}

export interface ClientProcess {
  readonly child: ChildProcess;
  /** What it logged so far (its progress goes to stderr). */
  stderr(): string;
  /** Its exit code, once it exits. */
  readonly exited: Promise<number | null>;
  /** Waits until it logged `what` (or exited), then expects it in the log. */
  logged(what: RegExp): Promise<void>;
}

/** `npx tsx scripts/client.ts ARGS` from the repository root. */
export function spawnClient(args: readonly string[]): ClientProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/client.ts'), ...args], { cwd: ROOT });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stderr: () => stderr,
    exited,
    logged: async (what) => {
      await waitFor(`the client to log ${what}`, () => what.test(stderr) || child.exitCode !== null, 120);
      if (!what.test(stderr)) throw new Error(`the client exited without logging ${what}:\n${stderr}`);
    },
  };
}
