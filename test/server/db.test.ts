import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nowIso, openDatabase } from '../../server/db';
import { EmbeddedPassageStore } from '../../server/passages';
import { SqlitePassageRecords } from '../../server/sqlite-passages';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const MODELS = { reader: 'r', passageEncoder: 'enc', embeddingDim: 2 };

describe('openDatabase', () => {
  it('gives the passages of a database made before passage_contributors their first contributor, once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corag-db-'));
    dirs.push(dir);
    const path = join(dir, 'coordinator.sqlite');
    let db = openDatabase(path);
    db.prepare("INSERT INTO sessions (id, config, admin_token_hash, join_code, created_at) VALUES ('s', '{}', 'h', 'j', ?)").run(nowIso());
    const store = new EmbeddedPassageStore(new SqlitePassageRecords(db));
    const [{ id }] = await store.add('s', MODELS, 'owner', [{ title: 't', text: 'a passage', embedding: [1, 0], encoder: 'enc' }]);
    await store.add('s', MODELS, 'second', [{ title: 't', text: 'a passage', embedding: [1, 0], encoder: 'enc' }]);
    db.exec('DELETE FROM passage_contributors'); // the state an older coordinator left
    db.close();

    db = openDatabase(path);
    expect(db.prepare('SELECT client_id FROM passage_contributors WHERE passage_id = ?').all(id)).toEqual([{ client_id: 'owner' }]);
    // The owner's withdrawal then removes it; reopening does not bring a contributor back.
    expect(await new EmbeddedPassageStore(new SqlitePassageRecords(db)).withdraw('s', MODELS, 'owner', id)).toEqual({ deleted: true, contributorsLeft: 0 });
    db.close();
    db = openDatabase(path);
    expect(db.prepare('SELECT COUNT(*) AS n FROM passage_contributors').get()).toEqual({ n: 0 });
    expect(await new EmbeddedPassageStore(new SqlitePassageRecords(db)).count('s')).toBe(0);
    db.close();
  });
});
