/**
 * Dashboard: the session at a glance — clients joined and online (live, from `presence` events),
 * participants, round progress, the global version, the store size and who contributed what, and
 * the EM and gold-answer loss this tab measured on each new global version from round 0 (the
 * starting model) on — on the session's held-out questions when it hands questions out, else on
 * the tab's own — with the training loss the participants reported per round.
 *
 * Organiser controls: whoever holds the session's admin token (a teacher running a classroom
 * demo: `npm start` writes it to data/demo-admin-token.txt) can open a round now — without
 * waiting for auto-start — and close the open round early: it aggregates the updates received so
 * far (or fails with fewer than the policy's minUpdates). The token stays in this tab's
 * sessionStorage only (gone when the tab closes). Its calls go through the page's failover client
 * (ctx.api): they reach a peer coordinator when the page's own is down.
 *
 * Join from another device: the join link at the addresses other devices can reach (the
 * coordinator's /api/network), with a QR code for phones — or, when the coordinator listens on
 * this computer only, how to open it up.
 */
import type { CoragClient } from '../../federated/client';
import type { ContributionCount, RoundInfo } from '../../federated/protocol';
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { linePlotSvg } from '../plot';
import { qrModules, qrSvg } from '../qr';

export function dashboardView(ctx: AppContext): View {
  const { store } = ctx;
  const tiles = h('div', { class: 'tiles', id: 'tiles' });
  const roundBar = progressBar('Round progress');
  const emChart = h('div', { class: 'chart', id: 'em-chart' });
  const lossChart = h('div', { class: 'chart', id: 'round-loss-chart' });
  const lossNote = h('p', { class: 'muted small', id: 'round-loss-note' });
  const emNote = h('p', { class: 'muted small', id: 'em-note' });
  const contributions = h('div', { id: 'contributions' });
  let rounds: RoundInfo[] = [];
  let counts: ContributionCount[] = [];
  let fetching = false;
  let lastKey = '';

  const joinBox = h('div', { class: 'join-device', id: 'join-device' });
  let networkUrls: string[] | null = null;
  let joinKey = '';
  void ctx
    .api()
    .then((api) => api.network())
    .catch(() => [])
    .then((urls) => {
      networkUrls = urls;
      render();
    });

  function renderJoinBox(joinCode: string | undefined) {
    const key = `${joinCode}|${networkUrls?.join(' ')}`;
    if (key === joinKey) return;
    joinKey = key;
    if (!joinCode || networkUrls === null) {
      replace(joinBox, h('p', { class: 'muted' }, 'Join a session to see its join link.'));
      return;
    }
    if (networkUrls.length === 0) {
      replace(
        joinBox,
        h(
          'p',
          { class: 'muted' },
          'This coordinator accepts connections from this computer only. To let phones and other computers on the network join, restart it with ',
          h('code', {}, 'npm start -- --host 0.0.0.0'),
          '; their join link and QR code then appear here.',
        ),
      );
      return;
    }
    const links = networkUrls.map((base) => `${base}/?join=${encodeURIComponent(joinCode)}`);
    const code = h('div', { class: 'qr', id: 'join-qr' });
    code.innerHTML = qrSvg(qrModules(links[0]), `QR code of the join link ${links[0]}`);
    replace(
      joinBox,
      code,
      h(
        'div',
        { class: 'stack' },
        h('p', {}, 'Scan the code, or open one of these links, on the same network:'),
        h('ul', { class: 'join-links' }, ...links.map((l) => h('li', {}, h('a', { href: l }, l)))),
        h('p', { class: 'muted small' }, `Join code: ${joinCode}`),
      ),
    );
  }

  const tokenKey = () => `corag-admin-token/${store.state.session?.id ?? ''}`;
  const adminToken = h('input', {
    type: 'password',
    id: 'admin-token',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'paste the admin token',
  }) as HTMLInputElement;
  const openButton = h('button', { type: 'button', id: 'open-round' }, 'Open a round now') as HTMLButtonElement;
  const closeButton = h('button', { type: 'button', id: 'close-round' }, 'Close the open round now') as HTMLButtonElement;
  const adminStatus = h('p', { class: 'muted', id: 'admin-status' });

  /** Runs one admin call with the token typed in; on success remembers the token for this tab. */
  async function asAdmin(what: string, call: (api: CoragClient, sessionId: string) => Promise<RoundInfo>): Promise<void> {
    const s = store.state;
    const token = adminToken.value.trim();
    if (!s.session) return;
    if (!token) {
      store.notify('error', `${what}: paste the session's admin token first.`);
      return;
    }
    openButton.disabled = closeButton.disabled = true;
    try {
      const round = await call((await ctx.api()).withToken(token), s.session.id);
      sessionStorage.setItem(tokenKey(), token);
      const outcome =
        round.state === 'failed'
          ? `round ${round.round} failed: ${round.failureReason ?? `${round.accepted} updates arrived, ${s.session.config.roundPolicy.minUpdates} needed`}; the model stays at version ${round.baseVersion}`
          : `round ${round.round} is ${round.state} (${round.accepted} of ${round.participants.length} updates)`;
      store.notify(round.state === 'failed' ? 'info' : 'ok', `${what}: ${outcome}.`);
      store.update((st) => {
        st.round = round;
      });
    } catch (e) {
      store.notify('error', `${what}: ${errorText(e)}`);
    } finally {
      openButton.disabled = closeButton.disabled = false;
      lastKey = '';
      render();
    }
  }
  openButton.addEventListener('click', () => void asAdmin('Open a round', (api, sid) => api.openRound(sid)));
  closeButton.addEventListener(
    'click',
    () =>
      void asAdmin('Close the round', async (api, sid) => {
        const current = store.state.round;
        if (!current || current.state !== 'open') throw new Error('no round is open');
        return api.closeRound(sid, current.round);
      }),
  );

  async function fetchDetails() {
    const s = store.state;
    if (!s.credentials || !s.session || fetching) return;
    fetching = true;
    try {
      const api = (await ctx.api()).withToken(s.credentials.token);
      const latest = s.round?.round ?? 0;
      const known = new Map(rounds.map((r) => [r.round, r]));
      const wanted = Array.from({ length: latest }, (_, i) => i + 1).filter((n) => known.get(n)?.state !== 'closed' && known.get(n)?.state !== 'failed');
      for (const r of await Promise.all(wanted.map((n) => api.round(s.session!.id, n)))) known.set(r.round, r);
      rounds = [...known.values()].sort((a, b) => a.round - b.round);
      counts = await api.contributions(s.session.id);
      // Joined clients and store size are not pushed as events: refresh the session snapshot.
      const info = await api.session(s.session.id);
      store.update((st) => {
        st.session = info;
      });
      render();
    } catch (e) {
      store.notify('error', `Dashboard: ${errorText(e)}`);
    } finally {
      fetching = false;
    }
  }

  function tile(label: string, value: string | number, id: string) {
    return h('div', { class: 'tile', id }, h('span', { class: 'tile-value' }, value), h('span', { class: 'tile-label' }, label));
  }

  function render() {
    const s = store.state;
    if (!s.session) {
      replace(tiles, h('p', { class: 'muted' }, 'Join a session to see its dashboard.'));
      return;
    }
    const r = s.round;
    replace(
      tiles,
      tile('clients joined', s.session.clients, 'tile-clients'),
      tile('clients online', s.session.online, 'tile-online'),
      tile(r?.state === 'open' ? 'in this round' : 'in the last round', r ? r.participants.length : 0, 'tile-participants'),
      tile('global version', s.session.currentVersion ?? '—', 'tile-version'),
      tile('passages in the store', s.session.passages, 'tile-passages'),
      tile('your passages', s.passages, 'tile-yours'),
    );
    roundBar.set(
      r ? r.accepted / Math.max(1, r.participants.length) : 0,
      r ? `round ${r.round} ${r.state}: ${r.accepted} of ${r.participants.length} updates` : 'no round yet',
    );
    // Round 0 is the session's starting model; each later point the version that round produced.
    const scoredOn = s.handedOut ? 'the session’s held-out questions' : 'this tab’s questions';
    emChart.innerHTML = linePlotSvg(
      s.history.filter((x) => x.em !== undefined).map((x) => ({ x: x.round, y: x.em! })),
      { title: `Exact match per round (${scoredOn})`, xLabel: 'round', yLabel: 'EM', yRange: [0, 1], dots: true, height: 220 },
    );
    lossChart.innerHTML = linePlotSvg(
      s.history.filter((x) => x.nll !== undefined && Number.isFinite(x.nll)).map((x) => ({ x: x.round, y: x.nll! })),
      { title: `Answer loss per round (${scoredOn})`, xLabel: 'round', yLabel: 'answer NLL', dots: true, height: 220 },
    );
    const trained = rounds.filter((x) => Number.isFinite(x.metrics.loss));
    lossNote.textContent =
      `Mean token loss of the gold answers on ${scoredOn} (lower is better), scored in this tab on each new global version. ` +
      (trained.length
        ? `Training loss the participants reported: ${trained.map((x) => `round ${x.round} ${x.metrics.loss.toFixed(3)}`).join(', ')}.`
        : 'No round has reported a training loss yet.');
    emNote.textContent = s.history.length ? '' : 'Take part in rounds (Training page) to score each new global version here, starting with the current one.';
    renderJoinBox(s.credentials?.joinCode);
    if (!adminToken.value) adminToken.value = sessionStorage.getItem(tokenKey()) ?? '';
    const policy = s.session.config.roundPolicy;
    adminStatus.textContent =
      `A round needs at least ${policy.minClients} joined clients. ` +
      (policy.autoStart ? 'The next round opens by itself once enough have joined and the last one ended. ' : 'Auto-start is off: open each round here. ') +
      `At its deadline (${policy.deadlineSeconds} s), or when closed here, a round aggregates the updates in if there are at least ${policy.minUpdates}, else it fails.`;
    closeButton.hidden = r?.state !== 'open';
    const me = s.credentials?.clientId;
    replace(
      contributions,
      counts.length
        ? h(
            'table',
            { class: 'table' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Client'), h('th', { scope: 'col', class: 'num' }, 'Passages'))),
            h(
              'tbody',
              {},
              ...counts.map((c) =>
                h('tr', {}, h('th', { scope: 'row' }, h('code', {}, c.clientId), c.clientId === me ? ' (you)' : ''), h('td', { class: 'num' }, c.passages)),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No contributions yet.'),
    );
  }

  const root = h(
    'div',
    { class: 'page' },
    tiles,
    h('section', { class: 'card stack', 'aria-labelledby': 'progress-title' }, h('h2', { id: 'progress-title' }, 'Round progress'), roundBar.root),
    h(
      'div',
      { class: 'grid-2' },
      h('section', { class: 'card stack', 'aria-labelledby': 'em-title' }, h('h2', { id: 'em-title' }, 'Exact match per round'), emChart, emNote),
      h('section', { class: 'card stack', 'aria-labelledby': 'rloss-title' }, h('h2', { id: 'rloss-title' }, 'Answer loss per round'), lossChart, lossNote),
    ),
    h('section', { class: 'card stack', 'aria-labelledby': 'contrib-title' }, h('h2', { id: 'contrib-title' }, 'Contributions'), contributions),
    h('section', { class: 'card stack', 'aria-labelledby': 'join-device-title' }, h('h2', { id: 'join-device-title' }, 'Join from another device'), joinBox),
    h(
      'section',
      { class: 'card stack', 'aria-labelledby': 'admin-title' },
      h('h2', { id: 'admin-title' }, 'Organiser controls'),
      adminStatus,
      h('label', { for: 'admin-token' }, 'Admin token of this session (the demo session’s is in data/demo-admin-token.txt on the coordinator)'),
      adminToken,
      h('div', { class: 'row' }, openButton, closeButton),
    ),
  );

  return {
    root,
    update() {
      const s = store.state;
      render();
      // Refetch round details and contributions when the round or the store changes.
      const key = `${s.round?.round}/${s.round?.state}/${s.round?.accepted}/${s.session?.passages}`;
      if (key !== lastKey) {
        lastKey = key;
        void fetchDetails();
      }
    },
  };
}
