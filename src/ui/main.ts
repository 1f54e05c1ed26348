/**
 * The CoRAG web app: one tab = one CoRAG participant. The page renders and handles input; model
 * work runs in two workers (embedding, training/QA) reached through comlink; what must survive a
 * reload lives in IndexedDB. Hash routes: #/join, #/passages, #/train, #/ask, #/dashboard.
 */
import * as Comlink from 'comlink';
import type { EmbedWorkerApi } from '../../workers/embed.worker';
import type { ProbeWorkerApi } from '../../workers/probe.worker';
import type { TrainWorkerApi } from '../../workers/train.worker';
import { backendBanner, decideBackend } from './backend-setting';
import { readMemoryBudget } from './memory-setting';
import { passageEncoderNote, readPassageEncoderSetting } from './passage-encoder-setting';
import type { PassageEncoderReport, PassageEncoderSetting } from '../corag/passage-encoder-choice';
import type { CoragClient } from '../federated/client';
import { handoffUrl, readHandoff, tabCoordinator } from '../federated/rejoin';
import { BrowserStore, KV } from '../platform/browser/idb-store';
import { errorText, type AppContext, type View } from './context';
import { h, replace } from './dom';
import { formatBytes } from '../ingest/files';
import { Store, type AppState } from './state';
import { askView } from './views/ask';
import { dashboardView } from './views/dashboard';
import { joinView } from './views/join';
import { passagesView } from './views/passages';
import { trainView } from './views/train';
import type { QAPair } from '../corag/local-training';
import type { RoundRecord, StoredCredentials, TrainWorkerEvent } from '../../workers/protocol';
import { consentKey } from '../corag/training-consent';
import './styles.css';

const ROUTES: Record<string, { title: string; make: (ctx: AppContext) => View }> = {
  join: { title: 'Join', make: joinView },
  passages: { title: 'Passages', make: passagesView },
  train: { title: 'Training', make: trainView },
  ask: { title: 'Ask', make: askView },
  dashboard: { title: 'Dashboard', make: dashboardView },
};

/** The latest word on a round's update replaces the earlier one (retrying → uploaded). */
function setUpload(s: AppState, entry: AppState['uploads'][number]): void {
  s.uploads = [...s.uploads.filter((u) => u.round !== entry.round), entry];
}

function handleWorkerEvent(store: Store, e: TrainWorkerEvent): void {
  switch (e.type) {
    case 'server': {
      const ev = e.event;
      store.update((s) => {
        if (ev.type === 'hello') {
          s.session = ev.session;
          s.round = ev.session.round;
        } else if (ev.type === 'round-opened') {
          s.round = ev.round;
        } else if (ev.type === 'update-accepted') {
          if (s.round && s.round.round === ev.round) s.round = { ...s.round, accepted: ev.accepted };
        } else if (ev.type === 'round-closed') {
          s.round = ev.round;
          if (s.session && ev.round.resultVersion !== null) s.session = { ...s.session, currentVersion: ev.round.resultVersion };
        } else if (ev.type === 'passages-changed') {
          if (s.session) s.session = { ...s.session, passages: ev.total };
        } else if (ev.type === 'presence') {
          if (s.session) s.session = { ...s.session, online: ev.online };
        }
      });
      return;
    }
    case 'connection':
      store.update((s) => {
        s.online = e.online;
        s.connectionMessage = e.message;
      });
      if (e.message) store.notify('error', e.message);
      return;
    case 'model':
      store.update((s) => {
        s.model = { version: e.version, loaded: e.loaded, total: e.total, ready: !!e.ready || (s.model?.ready ?? false) };
      });
      return;
    case 'round-training':
      store.update((s) => {
        s.training = { round: e.round };
        s.loss = [];
      });
      return;
    case 'training':
      store.update((s) => {
        s.training = { round: e.round, progress: e.progress };
        s.loss = [...s.loss, { step: e.progress.step, loss: e.progress.loss }];
      });
      return;
    case 'uploaded':
      store.update((s) => {
        setUpload(s, { round: e.round, status: 'uploaded', detail: `${formatBytes(e.bytes)}, ${e.numExamples} examples` });
      });
      store.notify('ok', `Round ${e.round}: update sent.`);
      return;
    case 'upload-refused':
      store.update((s) => {
        setUpload(s, { round: e.round, status: 'refused', detail: e.message });
      });
      store.notify('error', `Round ${e.round}: the coordinator refused the update — ${e.message}`);
      return;
    case 'upload-retrying':
      store.update((s) => {
        const detail = `attempt ${e.attempt} failed (${e.message}); trying again in ${Math.max(1, Math.round(e.delayMs / 1000))} s`;
        setUpload(s, { round: e.round, status: 'retrying', detail });
      });
      return;
    case 'evaluated':
      store.update((s) => {
        s.history = [...s.history.filter((r) => r.round !== e.record.round), e.record].sort((a, b) => a.round - b.round);
      });
      return;
    case 'round-failed':
      // What failed and what to do; the connection status is the event stream's alone.
      if (e.failure.round !== undefined)
        store.update((s) => {
          setUpload(s, { round: e.failure.round!, status: 'failed', detail: e.failure.message });
        });
      store.notify('error', e.failure.message);
      return;
    case 'notice':
      store.notify(e.kind, e.text);
      return;
    case 'coordinator':
      store.update((s) => {
        s.coordinator = e.url;
      });
      store.notify('info', `The coordinator stopped answering; continuing with ${e.url}.`);
      return;
  }
}

async function main(): Promise<void> {
  const appBase = location.origin + location.pathname.replace(/[^/]*$/, '');
  const store = new Store();
  const db = await BrowserStore.open();
  // A link from a tab whose coordinator died (the header's "continue on" link, handoffUrl): this
  // page, on a peer's origin, resumes that tab's client instead of joining as a new one. The
  // fragment holds the token: it leaves the address bar and the history entry at once.
  const handoff = readHandoff(location.hash);
  if (handoff) {
    history.replaceState(null, '', `${location.pathname}${location.search}#/passages`);
    const existing = await db.get<StoredCredentials>(KV.credentials);
    if (!existing || existing.sessionId === handoff.sessionId) await db.set(KV.credentials, handoff);
    else store.notify('error', 'This browser already takes part in another session here: leave it (Join page) before continuing the other one.');
  }
  const embed = Comlink.wrap<EmbedWorkerApi>(new Worker(new URL('../../workers/embed.worker.ts', import.meta.url), { type: 'module', name: 'embed' }));
  const train = Comlink.wrap<TrainWorkerApi>(new Worker(new URL('../../workers/train.worker.ts', import.meta.url), { type: 'module', name: 'train' }));
  let passageEncoderSetting: PassageEncoderSetting = 'auto';
  try {
    passageEncoderSetting = readPassageEncoderSetting();
  } catch (e) {
    store.notify('error', `${errorText(e)}; passages embed with the automatic choice.`);
  }

  // The page renders (and offers Join) before the backend is measured and started; a join waits
  // for it (see ctx.connect).
  let backendIsReady!: () => void;
  let backendFailed!: (e: Error) => void;
  const backendReady = new Promise<void>((ok, fail) => {
    backendIsReady = ok;
    backendFailed = fail;
  });
  backendReady.catch(() => undefined); // the banner reports it; a join reports it again

  let api: Promise<CoragClient> | undefined;
  const ctx: AppContext = {
    store,
    db,
    embed,
    train,
    appBase,
    api: () =>
      (api ??= tabCoordinator(appBase, db, undefined, {
        onSwitch: (_from, to) => store.notify('info', `The coordinator stopped answering; the page continues with ${to}.`),
      })),
    async connect(joinCode, name) {
      // Joining loads the model in the workers: not before their backend has started.
      await backendReady;
      const { credentials, session } = await train.connect(appBase, joinCode, name);
      store.update((s) => {
        s.credentials = credentials;
        s.session = session;
        s.round = session.round;
      });
      // tfjs embeds at once; when ONNX Runtime is built in the background, its switch (or
      // refusal) arrives later as a second report.
      const showEncoder = (report: PassageEncoderReport) => {
        replace(passageEncoderSlot, passageEncoderNote(report));
        store.update((s) => {
          s.passageEncoder = report;
        });
      };
      const encoder = await embed.load(
        { appBase, sessionId: credentials.sessionId, token: credentials.token },
        session,
        session.currentVersion!,
        passageEncoderSetting,
        Comlink.proxy(showEncoder),
      );
      showEncoder(encoder);
      store.update((s) => {
        s.embedderReady = true;
      });
      const history = (await db.get<RoundRecord[]>(KV.history)) ?? [];
      store.update((s) => {
        s.history = history;
      });
      // Taking part survives a reload: rejoin the open round (retraining from its base) or wait for the next.
      const qa = await db.get<{ pairs: QAPair[] }>(KV.qaPairs);
      if ((await db.get<boolean>(KV.participating)) && (qa?.pairs.length || session.config.trainingQuestions)) {
        // The consent to train on private passages is per tab (sessionStorage): a new tab asks again.
        try {
          const started = await train.start(qa?.pairs ?? [], sessionStorage.getItem(consentKey(credentials.sessionId)) === 'yes');
          store.update((s) => {
            s.participating = true;
            s.handedOut = started.handedOut ? started : undefined;
          });
        } catch (e) {
          store.notify('error', `Not taking part in rounds: ${errorText(e)}`);
        }
      }
    },
    async leave() {
      await train.stop();
      await db.delete(KV.credentials);
      location.hash = '#/join';
      location.reload();
    },
  };

  // ----- shell
  const nav = h('nav', { 'aria-label': 'Sections' }, ...Object.entries(ROUTES).map(([key, r]) => h('a', { href: `#/${key}`, 'data-route': key }, r.title)));
  const status = h('span', { class: 'status', id: 'connection', 'aria-live': 'polite' });
  // After a failover: where to go on when this page's coordinator is down and the page is reloaded.
  const handoffSlot = h('span', { id: 'continue-on' });
  let handoffHref = '';
  const bannerSlot = h('div', { id: 'banner-slot' }, h('div', { class: 'banner', role: 'status' }, 'Starting the model backend…'));
  // Which engine embeds passages (tfjs or ONNX Runtime), once the embedding worker has loaded it.
  const passageEncoderSlot = h('div', { id: 'passage-encoder-slot' });
  const notices = h('div', { class: 'notices', id: 'notices', role: 'log', 'aria-live': 'assertive' });
  const main = h('main', { id: 'view' });
  document.body.replaceChildren(
    h('header', { class: 'top' }, h('a', { class: 'brand', href: '#/join' }, 'CoRAG', h('span', {}, ' collaborative QA')), nav, status, handoffSlot),
    bannerSlot,
    passageEncoderSlot,
    notices,
    main,
    h('footer', {}, 'Your passages and questions stay in this browser unless you contribute them. Demo data: SQuAD (CC BY-SA 4.0).'),
  );

  let current: { key: string; view: View } | undefined;
  const route = () => {
    const key = location.hash.replace(/^#\/?/, '') || (store.state.credentials ? 'passages' : 'join');
    const r = ROUTES[key] ?? ROUTES.join;
    const k = ROUTES[key] ? key : 'join';
    if (current?.key === k) return;
    current?.view.dispose?.();
    current = { key: k, view: r.make(ctx) };
    replace(main, current.view.root);
    document.title = `${r.title} · CoRAG`;
    for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', a.getAttribute('data-route') === k);
    current.view.update();
  };
  window.addEventListener('hashchange', route);

  store.subscribe((s) => {
    status.className = `status ${s.session ? (s.online ? 'online' : 'offline') : ''}`;
    status.textContent = s.session
      ? `${s.session.config.name} · ${s.online ? 'connected' : 'offline'}${s.model ? ` · model v${s.model.version}${s.model.ready ? '' : ' (loading)'}` : ''}`
      : 'not joined';
    const peer = s.coordinator && s.credentials && new URL(s.coordinator).origin !== location.origin ? s.coordinator : undefined;
    const href = peer && s.credentials ? handoffUrl(peer, s.credentials) : '';
    if (handoffHref !== href) {
      handoffHref = href;
      replace(
        handoffSlot,
        ...(peer
          ? [
              h(
                'a',
                { href, class: 'small', title: 'Open this session as the same participant on the coordinator that answers now' },
                `continue on ${new URL(peer).host}`,
              ),
            ]
          : []),
      );
    }
    replace(
      notices,
      ...s.notices.map((n) =>
        h(
          'div',
          { class: `notice ${n.kind}`, role: n.kind === 'error' ? 'alert' : 'status' },
          h('span', {}, n.text),
          h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => store.dismiss(n.id) }, '×'),
        ),
      ),
    );
    current?.view.update();
  });
  route();

  /** The participant's training memory budget; an unreadable one is said and the default used. */
  const memoryBudget = (): number | undefined => {
    try {
      return readMemoryBudget();
    } catch (e) {
      store.notify('error', `${errorText(e)}; training uses the default memory budget.`);
      return undefined;
    }
  };

  // ----- backend, then resume a stored session (a reload keeps identity, passages and cached model)
  try {
    // Measured once (in the embedding worker, unless a setting or ?backend= decides); both workers start the choice.
    // The probe runs in a worker of its own, ended as soon as the choice is made — also when
    // decideBackend stopped waiting for it: a probe still running would compete with the real work.
    let probeWorker: Worker | undefined;
    const choice = await decideBackend((candidates) => {
      probeWorker = new Worker(new URL('../../workers/probe.worker.ts', import.meta.url), { type: 'module', name: 'probe' });
      return Comlink.wrap<ProbeWorkerApi>(probeWorker).probe(candidates);
    }).finally(() => probeWorker?.terminate());
    const preference = [...choice.order];
    const reports = await Promise.all([
      train.init(
        preference,
        Comlink.proxy((e: TrainWorkerEvent) => handleWorkerEvent(store, e)),
        memoryBudget(),
      ),
      embed.init(preference),
    ]);
    store.update((s) => {
      s.backend = reports[0];
    });
    replace(bannerSlot, backendBanner(reports[0], choice));
    backendIsReady();
  } catch (e) {
    backendFailed(new Error(`no model backend could start: ${errorText(e)}`));
    replace(bannerSlot, h('div', { class: 'banner error', role: 'alert' }, `No model backend could start: ${errorText(e)}`));
    return;
  }
  const stored = await db.get<StoredCredentials>(KV.credentials);
  const linkCode = new URLSearchParams(location.search).get('join');
  if (stored && (!linkCode || linkCode === stored.joinCode)) {
    try {
      await ctx.connect(undefined, stored.name);
      store.notify('info', `Welcome back, ${stored.name || stored.clientId}: rejoined “${store.state.session?.config.name}”.`);
    } catch (e) {
      store.notify('error', `Could not rejoin the stored session: ${errorText(e)}`);
    }
  }
  (window as unknown as { __coragReady: boolean }).__coragReady = true;
}

main().catch((e: unknown) => {
  document.body.textContent = `CoRAG could not start: ${errorText(e)}`;
});
