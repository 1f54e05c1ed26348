import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { loadBertCheckpoint, loadT5Checkpoint } from '../../src/model/checkpoint';
import { folderModelSource } from '../../src/platform/node/folder-source';

const demo = (side: string) => fileURLToPath(new URL(`../../public/models/demo/${side}`, import.meta.url));

describe('shipped demo checkpoints (public/models/demo)', () => {
  it('load with the project loaders, with their trimmed tokenizers, and stay within 25 MB of weights', async () => {
    await initBackend('cpu');
    const reader = await loadT5Checkpoint(folderModelSource(demo('reader')));
    const retriever = await loadBertCheckpoint(folderModelSource(demo('retriever')));
    try {
      expect(reader.tokenizer!.vocabSize).toBe(reader.config.vocab_size);
      expect(retriever.tokenizer!.vocabSize).toBe(retriever.config.vocab_size);
      expect(reader.tokenizer!.tokenToId('<extra_id_0>')).toBeDefined();
      const bytes = statSync(`${demo('reader')}/model.safetensors`).size + statSync(`${demo('retriever')}/model.safetensors`).size;
      expect(bytes).toBeLessThanOrEqual(25e6);
    } finally {
      reader.params.dispose();
      retriever.params.dispose();
    }
  }, 30_000);
});
