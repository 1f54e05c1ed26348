/** Tiny random CoRAG bundles for tests: src/model/tiny checkpoints with the real tokenizers. */
import { readdirSync, readFileSync } from 'node:fs';
import { memoryModelSource } from '../../src/corag/memory-source';
import type { QAPair } from '../../src/corag/local-training';
import { ModelBundle } from '../../src/corag/model-bundle';
import type { PassageText } from '../../src/corag/retrieve';
import type { T5FeedForward } from '../../src/model/t5/config';
import { tinyBertConfig, tinyCheckpointFiles, tinyT5Config } from '../../src/model/tiny';

export function tokenizerFiles(folder: 't5' | 'bert-base-uncased'): Map<string, Uint8Array> {
  const dir = new URL(`../../public/models/tokenizers/${folder}/`, import.meta.url);
  return new Map(readdirSync(dir).map((name) => [name, new Uint8Array(readFileSync(new URL(name, dir)))]));
}

const generated = new Map<string, { reader: Map<string, Uint8Array>; retriever: Map<string, Uint8Array> }>();

/** Reader checkpoint seed 1 and retriever seed 2 (gated-GELU reader), as the coordinator's demo session. */
export function tinyBundle(
  readerSeed = 1,
  retrieverSeed = 2,
  feedForward: T5FeedForward = 'gated-gelu',
  readerConfigFields: Record<string, unknown> = {},
): Promise<ModelBundle> {
  // Generating the weights takes seconds; loading the same files again is fast.
  const key = `${readerSeed}/${retrieverSeed}/${feedForward}`;
  let files = generated.get(key);
  if (!files) {
    files = {
      reader: new Map([...tokenizerFiles('t5'), ...tinyCheckpointFiles('t5', tinyT5Config(feedForward), readerSeed)]),
      retriever: new Map([...tokenizerFiles('bert-base-uncased'), ...tinyCheckpointFiles('bert', tinyBertConfig(), retrieverSeed)]),
    };
    generated.set(key, files);
  }
  const { retriever } = files;
  const reader = new Map(files.reader);
  if (Object.keys(readerConfigFields).length > 0) {
    const config = JSON.parse(new TextDecoder().decode(reader.get('config.json')!));
    reader.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, ...readerConfigFields })));
  }
  return ModelBundle.fromCheckpoints({
    reader: memoryModelSource('tiny-t5', reader),
    retriever: memoryModelSource('tiny-contriever', retriever),
  });
}

const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon'.split(' ');
/** The memory tests' workload: 8 passages longer than 128 reader tokens (every reader row is padded to maxLength) and 8 questions. */
export const FOOTPRINT_PASSAGES: PassageText[] = Array.from({ length: 8 }, (_, i) => ({
  title: `p${i}`,
  text: Array.from({ length: 90 }, (_, j) => WORDS[(i * 7 + j * 3) % WORDS.length]).join(' '),
}));
export const FOOTPRINT_QA: QAPair[] = Array.from({ length: 8 }, (_, i) => ({ question: `what is item ${i}?`, answers: [`the answer number ${i} is here`] }));
