import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { checkFileName, hubModelSource, isHubModelId, resolveModelSource, urlModelSource, type ModelSource } from '../../../src/model/checkpoint/source';
import { startLocalHub, type LocalHub } from './local-hub';

const FIXTURE = fileURLToPath(new URL('../../../../shared/fixtures/hf-reference/bert-tiny/', import.meta.url));

describe('hub model ids', () => {
  it('accepts org/name and bare names with letters, digits, "-", "_", "."', () => {
    for (const id of ['google/flan-t5-small', 'facebook/contriever-msmarco', 't5-base', 'org_1/model.v2']) {
      expect(isHubModelId(id), id).toBe(true);
    }
  });

  it('rejects paths, empty parts, "..", "--" and leading or trailing separators', () => {
    for (const id of ['', 'a/b/c', '/abs', 'org/', 'org/../x', 'org/na--me', '-org/name', 'org/name.', 'org/na me', 'https://x/y']) {
      expect(isHubModelId(id), id).toBe(false);
    }
    expect(() => hubModelSource('org/../etc')).toThrow(/invalid Hugging Face model id "org\/..\/etc"/);
  });
});

describe('file names', () => {
  it('allows relative names inside the model folder and rejects escapes', () => {
    expect(checkFileName('model-00001-of-00002.safetensors')).toBe('model-00001-of-00002.safetensors');
    expect(checkFileName('onnx/model.onnx')).toBe('onnx/model.onnx');
    for (const bad of ['', '../secret', 'a/../../b', '/etc/passwd', 'a//b', 'a\\b', './x']) {
      expect(() => checkFileName(bad), bad).toThrow(/invalid model file name/);
    }
  });
});

describe('resolveModelSource', () => {
  const folders: string[] = [];
  const openFolder = (path: string): ModelSource => {
    folders.push(path);
    return { describe: () => `folder ${path}`, fetchFile: async () => null };
  };

  it('maps ./path, ../path and /abs to the folder opener', () => {
    expect(resolveModelSource('./models/t5', { openFolder }).describe()).toBe('folder ./models/t5');
    expect(resolveModelSource('../m', { openFolder }).describe()).toBe('folder ../m');
    expect(resolveModelSource('/data/m', { openFolder }).describe()).toBe('folder /data/m');
    expect(folders).toEqual(['./models/t5', '../m', '/data/m']);
  });

  it('says a local folder needs Node when no folder opener is given', () => {
    expect(() => resolveModelSource('./models/t5')).toThrow(/local folder, which can only be read in Node/);
  });

  it('maps http(s) URLs to a URL base and hub ids to the hub with endpoint and revision', () => {
    expect(resolveModelSource('https://example.org/models/t5').describe()).toBe('https://example.org/models/t5/');
    expect(resolveModelSource('google/flan-t5-small').describe()).toBe('google/flan-t5-small@main (https://huggingface.co)');
    expect(resolveModelSource('google/flan-t5-small', { endpoint: 'http://127.0.0.1:9/', revision: 'v1' }).describe()).toBe(
      'google/flan-t5-small@v1 (http://127.0.0.1:9)',
    );
  });

  it('rejects what is neither a folder, a URL nor a hub id', () => {
    expect(() => resolveModelSource('a/b/c')).toThrow(/cannot tell where model "a\/b\/c" is/);
    expect(() => resolveModelSource('ftp://x/y')).toThrow(/cannot tell where model/);
  });
});

describe('HTTP sources against a local server', () => {
  let hub: LocalHub;
  let chunkedHub: LocalHub;
  let configBytes: Uint8Array;

  beforeAll(async () => {
    configBytes = new Uint8Array(await readFile(FIXTURE + 'config.json'));
    const failures = { '/files/bert/forbidden.json': 403, '/org/bert/resolve/main/broken.json': 500 };
    hub = await startLocalHub({ repos: { 'org/bert': FIXTURE }, folders: { bert: FIXTURE }, revisions: ['main', 'v1.0'], failures });
    chunkedHub = await startLocalHub({ folders: { bert: FIXTURE }, chunked: true });
  });

  afterAll(async () => {
    await hub.close();
    await chunkedHub.close();
  });

  it('fetches hub files from {endpoint}/{id}/resolve/{revision}/{file}', async () => {
    const source = hubModelSource('org/bert', { endpoint: hub.url, revision: 'v1.0' });
    expect(await source.fetchFile('config.json')).toEqual(configBytes);
    expect(hub.requests.at(-1)).toBe('/org/bert/resolve/v1.0/config.json');
  });

  it('returns null for a missing file (404) and throws other HTTP errors with status and URL', async () => {
    const source = hubModelSource('org/bert', { endpoint: hub.url });
    expect(await source.fetchFile('tokenizer.json')).toBeNull();
    await expect(source.fetchFile('broken.json')).rejects.toThrow(`GET ${hub.url}/org/bert/resolve/main/broken.json failed with HTTP 500`);
    const files = urlModelSource(`${hub.url}/files/bert`);
    await expect(files.fetchFile('forbidden.json')).rejects.toThrow(`GET ${hub.url}/files/bert/forbidden.json failed with HTTP 403`);
  });

  it('treats an unknown revision like the hub does: not found', async () => {
    expect(await hubModelSource('org/bert', { endpoint: hub.url, revision: 'nope' }).fetchFile('config.json')).toBeNull();
  });

  it('reports byte progress against content-length', async () => {
    const events: Array<[number, number | undefined]> = [];
    const bytes = await urlModelSource(`${hub.url}/files/bert/`).fetchFile('model.safetensors', (loaded, total) => events.push([loaded, total]));
    expect(bytes!.byteLength).toBe(195616);
    expect(events[0]).toEqual([0, 195616]);
    expect(events.at(-1)).toEqual([195616, 195616]);
    for (let i = 1; i < events.length; i++) expect(events[i][0]).toBeGreaterThanOrEqual(events[i - 1][0]);
  });

  it('reads chunked bodies without content-length, reporting an unknown total', async () => {
    const events: Array<[number, number | undefined]> = [];
    const bytes = await urlModelSource(`${chunkedHub.url}/files/bert`).fetchFile('config.json', (loaded, total) => events.push([loaded, total]));
    expect(bytes).toEqual(configBytes);
    expect(events.at(-1)).toEqual([configBytes.byteLength, undefined]);
  });

  it('keeps file names inside the base URL, even ones that look like URLs', async () => {
    const source = urlModelSource(`${hub.url}/files/bert/`);
    expect(await source.fetchFile('file:/etc/passwd')).toBeNull();
    expect(hub.requests.at(-1)).toBe('/files/bert/file%3A/etc/passwd');
  });

  it('names the URL when the server cannot be reached', async () => {
    const closed = await startLocalHub({});
    await closed.close();
    await expect(urlModelSource(closed.url).fetchFile('config.json')).rejects.toThrow(`GET ${closed.url}/config.json failed:`);
  });
});
