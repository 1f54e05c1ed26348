/**
 * Dashboard: the session at a glance — clients joined and online (live, from `presence` events),
 * participants, round progress, the global version, the store size and who contributed what, the
 * round loss the coordinator reports, and the EM this tab measured on each new global version (its
 * own questions).
 */
import { CoragClient } from '../../federated/client';
import type { ContributionCount, RoundInfo } from '../../federated/protocol';
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { linePlotSvg } from '../plot';

export function dashboardView(ctx: AppContext): View {
  const { store } = ctx;
  const tiles = h('div', { class: 'tiles', id: 'tiles' });
  const roundBar = progressBar('Round progress');
  const emChart = h('div', { class: 'chart', id: 'em-chart' });
  const lossChart = h('div', { class: 'chart', id: 'round-loss-chart' });
  const contributions = h('div', { id: 'contributions' });
  let rounds: RoundInfo[] = [];
  let counts: ContributionCount[] = [];
  let fetching = false;
  let lastKey = '';

  async function fetchDetails() {
    const s = store.state;
    if (!s.credentials || !s.session || fetching) return;
    fetching = true;
    try {
      const api = new CoragClient(ctx.appBase, s.credentials.token);
      const latest = s.round?.round ?? 0;
      const known = new Map(rounds.map((r) => [r.round, r]));
      const wanted = Array.from({ length: latest }, (_, i) => i + 1).filter((n) => known.get(n)?.state !== 'closed' && known.get(n)?.state !== 'failed');
      for (const r of await Promise.all(wanted.map((n) => api.round(s.session!.id, n)))) known.set(r.round, r);
      rounds = [...known.values()].sort((a, b) => a.round - b.round);
      counts = await api.contributions(s.session.id);
      // Joined clients and store size are not pushed as events: refresh the session snapshot.
      const info = await api.session(s.session.id);
      store.update((st) => { st.session = info; });
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
    replace(tiles,
      tile('clients joined', s.session.clients, 'tile-clients'),
      tile('clients online', s.session.online, 'tile-online'),
      tile(r?.state === 'open' ? 'in this round' : 'in the last round', r ? r.participants.length : 0, 'tile-participants'),
      tile('global version', s.session.currentVersion ?? '—', 'tile-version'),
      tile('passages in the store', s.session.passages, 'tile-passages'),
      tile('your passages', s.passages, 'tile-yours'));
    roundBar.set(r ? r.accepted / Math.max(1, r.participants.length) : 0, r ? `round ${r.round} ${r.state}: ${r.accepted} of ${r.participants.length} updates` : 'no round yet');
    emChart.innerHTML = linePlotSvg(s.history.filter((x) => x.em !== undefined).map((x) => ({ x: x.round, y: x.em! })), { title: 'Exact match per round (this tab’s questions)', xLabel: 'round', yLabel: 'EM', yRange: [0, 1], dots: true, height: 220 });
    lossChart.innerHTML = linePlotSvg(rounds.filter((x) => Number.isFinite(x.metrics.loss)).map((x) => ({ x: x.round, y: x.metrics.loss })), { title: 'Mean training loss per round (all clients)', xLabel: 'round', yLabel: 'loss', dots: true, height: 220 });
    const me = s.credentials?.clientId;
    replace(contributions, counts.length
      ? h('table', { class: 'table' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Client'), h('th', { scope: 'col', class: 'num' }, 'Passages'))),
        h('tbody', {}, ...counts.map((c) => h('tr', {}, h('th', { scope: 'row' }, h('code', {}, c.clientId), c.clientId === me ? ' (you)' : ''), h('td', { class: 'num' }, c.passages)))))
      : h('p', { class: 'muted' }, 'No contributions yet.'));
  }

  const root = h('div', { class: 'page' },
    tiles,
    h('section', { class: 'card stack', 'aria-labelledby': 'progress-title' }, h('h2', { id: 'progress-title' }, 'Round progress'), roundBar.root),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card stack', 'aria-labelledby': 'em-title' }, h('h2', { id: 'em-title' }, 'Exact match per round'), emChart),
      h('section', { class: 'card stack', 'aria-labelledby': 'rloss-title' }, h('h2', { id: 'rloss-title' }, 'Training loss per round'), lossChart)),
    h('section', { class: 'card stack', 'aria-labelledby': 'contrib-title' }, h('h2', { id: 'contrib-title' }, 'Contributions'), contributions));

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
