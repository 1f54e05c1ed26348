/**
 * Training view: the round state live, this tab's training questions, the loss curve of the
 * current round, and what happened to each upload.
 */
import { readQaJsonl, splitLines } from '../../crab/loaders';
import type { QAPair } from '../../corag/local-training';
import { KV } from '../../platform/browser/idb-store';
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { linePlotSvg } from '../plot';
import { formatDuration } from '../progress';
import { consentKey, requestedTrainingScope, trainingScopeWithConsent } from '../../corag/training-consent';

export async function loadQaFile(name: string, text: string): Promise<QAPair[]> {
  return [...readQaJsonl(splitLines(text), { source: name })].map((q) => ({ question: q.question, answers: q.answers }));
}

export function trainView(ctx: AppContext): View {
  const { store, db } = ctx;
  const qaInput = h('input', { type: 'file', id: 'qa-input', accept: '.jsonl', class: 'visually-hidden' });
  const qaStatus = h('p', { class: 'muted', id: 'qa-status' });
  const demoButton = h('button', { type: 'button', class: 'ghost' }, 'Use the demo questions');
  const toggle = h('button', { type: 'button', class: 'primary', id: 'participate' }, 'Take part in rounds');
  const roundCard = h('div', { class: 'round', id: 'round-state', 'aria-live': 'polite' });
  const stepBar = progressBar('Local training');
  const chart = h('div', { class: 'chart', id: 'loss-chart' });
  const uploads = h('ul', { class: 'log', id: 'uploads' });
  // What training retrieves from, said before the user takes part; private passages need consent.
  const sourceNote = h('p', { class: 'small', id: 'training-source' });
  const consentBox = h('input', { type: 'checkbox', id: 'private-consent' }) as HTMLInputElement;
  const consentRow = h(
    'label',
    { class: 'row small', for: 'private-consent' },
    consentBox,
    h(
      'span',
      {},
      'Allow training in this tab to use my private passages (the update sent to the coordinator is then derived from them; their text is never sent)',
    ),
  );
  const consentGiven = () => {
    const id = store.state.session?.id;
    return id !== undefined && sessionStorage.getItem(consentKey(id)) === 'yes';
  };
  consentBox.addEventListener('change', async () => {
    const id = store.state.session?.id;
    if (!id) return;
    if (consentBox.checked) sessionStorage.setItem(consentKey(id), 'yes');
    else sessionStorage.removeItem(consentKey(id));
    // Taking part already: the next round follows the new choice (or this tab stops, if it must).
    if (store.state.participating) {
      const saved = await db.get<{ pairs: QAPair[] }>(KV.qaPairs);
      try {
        await ctx.train.start(saved?.pairs ?? [], consentBox.checked);
      } catch (e) {
        await ctx.train.stop();
        await db.set(KV.participating, false);
        store.update((st) => {
          st.participating = false;
        });
        store.notify('error', errorText(e));
      }
    }
    store.update(() => undefined);
  });

  async function setPairs(pairs: QAPair[], from: string) {
    try {
      await db.set(KV.qaPairs, { from, pairs });
      store.update((s) => {
        s.qaCount = pairs.length;
      });
      store.notify('ok', `${pairs.length} training questions loaded from ${from}.`);
    } catch (e) {
      store.notify('error', errorText(e));
    }
  }
  qaInput.addEventListener('change', async () => {
    const file = qaInput.files?.[0];
    qaInput.value = '';
    if (!file) return;
    try {
      await setPairs(await loadQaFile(file.name, await file.text()), file.name);
    } catch (e) {
      store.notify('error', `${errorText(e)} — no questions were changed.`);
    }
  });
  demoButton.addEventListener('click', async () => {
    try {
      const res = await fetch(new URL('demo/qa.jsonl', ctx.appBase));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      await setPairs(await loadQaFile('demo/qa.jsonl', await res.text()), 'the demo set');
    } catch (e) {
      store.notify('error', `Could not load the demo questions: ${errorText(e)}`);
    }
  });
  toggle.addEventListener('click', async () => {
    try {
      if (store.state.participating) {
        await ctx.train.stop();
        await db.set(KV.participating, false);
        store.update((s) => {
          s.participating = false;
        });
        return;
      }
      // Without questions of its own the tab trains on the shard the session hands it (if it does).
      const saved = await db.get<{ pairs: QAPair[] }>(KV.qaPairs);
      const started = await ctx.train.start(saved?.pairs ?? [], consentGiven());
      await db.set(KV.participating, true);
      store.update((s) => {
        s.participating = true;
        s.handedOut = started.handedOut ? started : undefined;
      });
      if (started.handedOut)
        store.notify(
          'ok',
          `Taking part with the session's questions: shard ${(started.shard ?? 0) + 1}, ${started.questions} questions; each new model is scored on ${started.evaluation} held-out ones.`,
        );
    } catch (e) {
      store.notify('error', errorText(e));
    }
  });

  const root = h(
    'div',
    { class: 'page grid-2' },
    h('section', { class: 'card stack', 'aria-labelledby': 'round-title' }, h('h2', { id: 'round-title' }, 'Round'), roundCard, sourceNote, consentRow, toggle),
    h(
      'section',
      { class: 'card stack', 'aria-labelledby': 'qa-title' },
      h('h2', { id: 'qa-title' }, 'Training questions'),
      h(
        'p',
        { class: 'muted small' },
        'A .jsonl file with one {"question": …, "answers": [...]} per line. They never leave this tab; only the weight update does.',
      ),
      h('div', { class: 'row' }, h('label', { for: 'qa-input', class: 'button' }, 'Load questions…'), demoButton),
      qaInput,
      qaStatus,
    ),
    h('section', { class: 'card stack wide', 'aria-labelledby': 'loss-title' }, h('h2', { id: 'loss-title' }, 'Local training'), stepBar.root, chart),
    h('section', { class: 'card stack wide', 'aria-labelledby': 'uploads-title' }, h('h2', { id: 'uploads-title' }, 'Updates sent'), uploads),
  );

  void db.get<{ pairs: QAPair[] }>(KV.qaPairs).then((saved) =>
    store.update((s) => {
      s.qaCount = saved?.pairs.length ?? 0;
    }),
  );

  return {
    root,
    update() {
      const s = store.state;
      const handsOut = s.session?.config.trainingQuestions;
      qaStatus.textContent = s.qaCount
        ? `${s.qaCount} questions ready.`
        : s.handedOut
          ? `Training on the session's questions: shard ${(s.handedOut.shard ?? 0) + 1}, ${s.handedOut.questions} questions (no other participant has them while the pool lasts); each new model is scored on ${s.handedOut.evaluation} questions nobody trains on.`
          : handsOut
            ? `None needed: when you take part, this session hands this tab ${handsOut.perClient} of its questions and keeps ${handsOut.heldOut} aside to score each new model. Load your own to train on them instead.`
            : 'No questions loaded yet: load a .jsonl file (or the demo questions) before taking part.';
      toggle.textContent = s.participating ? 'Stop taking part' : 'Take part in rounds';
      const requested = s.session ? requestedTrainingScope(s.session.config.training) : 'shared';
      consentBox.checked = consentGiven();
      consentRow.hidden = requested === 'shared';
      sourceNote.textContent = s.session ? trainingScopeWithConsent(requested, consentBox.checked).explanation : '';
      toggle.disabled = !s.session || (!s.participating && s.qaCount === 0 && !handsOut);
      const r = s.round;
      const me = s.credentials?.clientId;
      if (!s.session) replace(roundCard, h('p', { class: 'muted' }, 'Join a session first.'));
      else if (!r) replace(roundCard, h('p', {}, 'No round yet — waiting for the session owner (or enough participants) to open one.'));
      else {
        const selected = me !== undefined && r.participants.includes(me);
        const deadline = r.state === 'open' ? Math.max(0, (Date.parse(r.deadlineAt) - Date.now()) / 1000) : undefined;
        replace(
          roundCard,
          h('div', { class: 'round-head' }, h('span', { class: `pill ${r.state}` }, r.state), h('strong', {}, ` Round ${r.round}`)),
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Global version'),
            h('dd', {}, r.resultVersion !== null ? `${r.baseVersion} → ${r.resultVersion}` : `${r.baseVersion}`),
            h('dt', {}, 'Updates'),
            h('dd', {}, `${r.accepted} of ${r.participants.length}`),
            h('dt', {}, 'This tab'),
            h(
              'dd',
              {},
              r.state !== 'open'
                ? selected
                  ? 'was selected'
                  : 'was not selected'
                : selected
                  ? s.participating
                    ? 'selected — training'
                    : 'selected — press “Take part”'
                  : 'not selected in this round',
            ),
            deadline !== undefined ? h('dt', {}, 'Deadline') : null,
            deadline !== undefined ? h('dd', {}, `in ${formatDuration(deadline)}`) : null,
          ),
        );
      }
      const t = s.training;
      const p = t?.progress;
      stepBar.set(
        p ? p.step / p.total : 0,
        p
          ? `round ${t!.round}: step ${p.step} / ${p.total} · loss ${p.loss.toFixed(3)} · ${p.examplesPerSecond.toFixed(1)} examples/s · ${formatDuration(p.etaSeconds)} left`
          : 'idle',
      );
      chart.innerHTML = linePlotSvg(
        s.loss.map((l) => ({ x: l.step, y: l.loss })),
        {
          title: `Training loss per step${t ? ` (round ${t.round})` : ''}`,
          xLabel: 'step',
          yLabel: 'loss',
          width: 960,
          height: 240,
          dots: s.loss.length <= 30,
        },
      );
      replace(
        uploads,
        ...(s.uploads.length
          ? s.uploads
              .slice()
              .reverse()
              .map((u) =>
                h(
                  'li',
                  { class: u.status },
                  h('strong', {}, `Round ${u.round}: `),
                  u.status === 'uploaded'
                    ? `update sent (${u.detail})`
                    : u.status === 'retrying'
                      ? `sending — ${u.detail}`
                      : u.status === 'failed'
                        ? `not sent — ${u.detail.replace(/^Round \d+: /, '')}`
                        : `refused — ${u.detail}`,
                ),
              )
          : [h('li', { class: 'muted' }, 'Nothing sent yet.')]),
      );
    },
  };
}
