/**
 * The backend probe's own worker: measures each candidate backend (src/model/backend-probe.ts)
 * once, then the page terminates it. A worker of its own because probing initialises every
 * backend in it: the workers that do the real work then start exactly one, fresh, and a probe the
 * page stops waiting for (a loaded machine) is ended instead of racing their start.
 */
import * as Comlink from 'comlink';
import type { BackendName } from '../src/model/backend';
import type { BackendProbe } from '../src/model/backend-choice';
import { probeCandidates } from './runtime';

const api = {
  probe(candidates: BackendName[]): Promise<BackendProbe[]> {
    return probeCandidates(candidates);
  },
};

export type ProbeWorkerApi = typeof api;
Comlink.expose(api);
