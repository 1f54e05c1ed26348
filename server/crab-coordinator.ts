/**
 * The coordinator the CRAB runner trains through: the real server (buildApp) on 127.0.0.1 with an
 * ephemeral port and a temp data folder, removed again by `close`. It lives in server/ because
 * src/ never imports the server (src/crab/runner.ts only receives its URL).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from './app';

/** A coordinator on 127.0.0.1 with a temp data folder, removed again by `close`. */
export async function startCrabCoordinator(): Promise<{ url: string; close: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'corag-crab-'));
  // Sequential clients search once per question: far more requests per minute than a person makes;
  // and every experiment joins all its clients from this one address.
  const { app } = await buildApp({ dataDir, rateLimitPerMinute: 1_000_000, joinsPerMinutePerIp: 1_000_000, logger: false });
  // The clients share this process, and a training step blocks the event loop for seconds: an
  // idle keep-alive socket the server times out can close just as a client reuses it ("fetch
  // failed" on the first request after a long local phase). Only clients close idle sockets here.
  app.server.keepAliveTimeout = 0;
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    close: async () => {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
