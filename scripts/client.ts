/**
 * A headless CoRAG participant: joins a session and takes part in its rounds from Node, through
 * the same runtime a browser tab runs (FederatedCoragClient, src/corag/federated-client.ts):
 *
 *   npx tsx scripts/client.ts --server http://127.0.0.1:8787 --join CODE [--name NAME]
 *       [--questions FILE.jsonl] [--rounds N] [--backend wasm|cpu]
 *
 * Several coordinator processes serving the session (docs/DEPLOY.md §6): name each,
 * `--server http://a:8787,http://b:8788` or `--server` repeated. Requests go to the one that last
 * answered and move to the next when it stops answering (src/federated/failover.ts), the event
 * stream included: when its process dies the stream is followed again, on the next one.
 *
 * The session's models are read as a tab reads them (configs and tokenizers from the coordinator's
 * app folder, the weights as a global version). It trains on `--questions` (JSON lines with
 * `question` and `answers`), else on the shard the session hands out, retrieving from the session's
 * store; after each round it scores the new version on the session's held-out questions (when it
 * hands them out). Stops after `--rounds` rounds trained, on Ctrl-C, or when the coordinator
 * refuses this client.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FederatedCoragClient, globalVersionBytes, MemoryModelCache, type ClientEvent } from '../src/corag/federated-client';
import type { QAPair } from '../src/corag/local-training';
import { ModelBundle } from '../src/corag/model-bundle';
import { CoordinatorPassageSource } from '../src/corag/retrieve';
import { CoragClient } from '../src/federated/client';
import { coordinatorBase, failoverFetch } from '../src/federated/failover';
import { initBackend, parseBackendName } from '../src/model/backend';
import { loadBundleSpec } from '../src/platform/browser/session-bundle';

const HELP = `usage: npx tsx scripts/client.ts --server URL[,URL…] --join CODE [--name NAME] [--questions FILE.jsonl] [--rounds N] [--backend wasm|cpu]
  --server may be repeated: several coordinator processes of one deployment, failed over in turn
`;

/** One line per event worth a log line. */
function describe(e: ClientEvent): string | undefined {
  switch (e.type) {
    case 'connection':
      return e.online ? 'connected' : `connection: ${e.message}`;
    case 'model-loaded':
      return `round ${e.round}: model v${e.version} ${e.cached ? 'from the cache' : `downloaded (${e.bytes} bytes)`}`;
    case 'training-started':
      return `round ${e.round}: training`;
    case 'training':
      return e.progress.step === e.progress.total ? `round ${e.round}: ${e.progress.total} steps, loss ${e.progress.loss.toFixed(4)}` : undefined;
    case 'uploaded':
      return `round ${e.round}: update sent (${e.bytes} bytes, ${e.numExamples} examples)`;
    case 'upload-refused':
      return `round ${e.round}: update refused: ${e.message}`;
    case 'upload-retrying':
      return `round ${e.round}: upload attempt ${e.attempt} failed (${e.message}); retrying in ${e.delayMs} ms`;
    case 'round-skipped':
      return `round ${e.round}: skipped (${e.reason})`;
    case 'round-closed':
      return `round ${e.round.round}: ${e.round.state}${e.round.resultVersion !== null ? `, version ${e.round.resultVersion}` : ''}`;
    default:
      return undefined;
  }
}

/** The first of `urls` whose coordinator answers its health check. */
async function firstAnswering(urls: readonly string[]): Promise<string> {
  for (const url of urls) {
    if (
      await fetch(`${url}/api/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return url;
  }
  throw new Error(`no coordinator answers: ${urls.join(', ')}`);
}

function readQuestions(file: string): QAPair[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const { question, answers } = JSON.parse(line) as { question?: unknown; answers?: unknown };
      if (typeof question !== 'string' || !Array.isArray(answers) || !answers.every((a) => typeof a === 'string'))
        throw new Error(`${file}: each line needs "question" (a string) and "answers" (strings): ${line.slice(0, 120)}`);
      return { question, answers };
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      server: { type: 'string', multiple: true },
      join: { type: 'string' },
      name: { type: 'string' },
      questions: { type: 'string' },
      rounds: { type: 'string' },
      backend: { type: 'string', default: 'wasm' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.server || !values.join) {
    process.stdout.write(HELP);
    process.exit(values.help ? 0 : 2);
  }
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds > 0)) throw new Error('--rounds must be a positive integer');
  const log = (line: string) => process.stderr.write(`${line}\n`);
  await initBackend(parseBackendName(values.backend!));

  const urls = [...new Set(values.server.flatMap((v) => v.split(',')).map((u) => coordinatorBase(u.trim())))];
  const server = new CoragClient(
    urls[0],
    undefined,
    failoverFetch(urls, undefined, { onSwitch: (from, to, e) => log(`coordinator ${from} does not answer (${(e as Error).message}); now using ${to}`) }),
  );
  // The models' configs and tokenizers come from a coordinator's app folder: the first that answers.
  const appBase = `${await firstAnswering(urls)}/`;
  const joined = await server.join(values.join, values.name);
  const client = server.withToken(joined.token);
  const session = await client.session(joined.sessionId);
  const version = session.currentVersion;
  if (version === null) throw new Error(`session "${session.config.name}" has no global model yet`);
  const cache = new MemoryModelCache();
  const [spec, { bytes }] = await Promise.all([loadBundleSpec(appBase, session.config.models), globalVersionBytes(client, session.id, version, cache)]);
  const runtime = await FederatedCoragClient.resume(server, joined, {
    bundle: ModelBundle.fromGlobal(spec, bytes, version),
    cache,
    onEvent: (e) => {
      const line = describe(e);
      if (line) log(line);
    },
  });
  log(`joined "${session.config.name}" as ${joined.clientId} with model v${version}`);

  const handed = session.config.trainingQuestions ? await client.trainingQuestions(session.id) : undefined;
  const pairs = values.questions ? readQuestions(values.questions) : (handed?.questions.map((q) => ({ question: q.question, answers: [...q.answers] })) ?? []);
  if (pairs.length === 0) throw new Error('no training questions: pass --questions FILE.jsonl (this session hands out none)');
  const evaluation = handed?.evaluation.map((q) => ({ question: q.question, answers: [...q.answers] })) ?? [];
  const source = new CoordinatorPassageSource(runtime.client, session.id);
  runtime.setTraining(pairs, source);
  log(`training on ${pairs.length} questions${evaluation.length ? `, scoring each new version on ${evaluation.length} held-out ones` : ''}`);

  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort(new Error('interrupted')));
  await runtime.run({
    maxRounds: rounds,
    signal: stop.signal,
    onError: (e, failure) => log(`${failure.during === 'round' ? `round ${failure.round}` : `scoring round ${failure.round}`} failed: ${(e as Error).message}`),
    onRoundClosed: async (round) => {
      if (evaluation.length === 0 || round.state !== 'closed' || round.resultVersion === null) return;
      const k = Number(round.config.passagesPerQuestion ?? 5);
      const result = await runtime.evaluateGlobal(round.resultVersion, evaluation, source, { k, maxNewTokens: 16, round: round.round });
      log(
        `version ${round.resultVersion}: EM ${(100 * result.exactMatch).toFixed(1)}, F1 ${(100 * result.f1).toFixed(1)}, answer NLL ${result.answerNll.toFixed(3)}`,
      );
    },
  });
  log(`done: trained in ${runtime.roundsTrained} round(s)`);
  runtime.bundle.dispose();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
