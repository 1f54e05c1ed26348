/**
 * Join page: a join code (from the link) and a display name; then the model download. Without a
 * code in the link, the coordinator's open demo session (GET /api/public-session) is offered with
 * one button, so someone who just opened the app can try it. Both say, before anyone joins, what
 * leaves the device (weight updates, passages they choose to share) and what stays (JOIN_PRIVACY).
 */
import { CoragClient } from '../../federated/client';
import { formatBytes } from '../../ingest/files';
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { isNetworkError, isOutOfMemory } from '../../corag/training-errors';

/** What joining means for the participant's passages and device, said before they join. */
export const JOIN_PRIVACY = [
  'What leaves this device: the weight updates your browser computes when you take part in training rounds, and only the passages you choose to share with the session.',
  'What stays in this browser: your private passages, your questions, and everything else it computes for you (embeddings, answers, the training itself), using this device’s processor or GPU while a round runs.',
] as const;

function privacyNote(id?: string): HTMLElement {
  return h('p', { class: 'small join-privacy', ...(id ? { id } : {}) }, JOIN_PRIVACY.join(' '));
}

export function joinView(ctx: AppContext): View {
  const params = new URLSearchParams(location.search);
  // Said once: in the form, or in the offer of the open session when there is one.
  const formNote = privacyNote('join-privacy-form');
  const code = h('input', {
    id: 'join-code',
    name: 'code',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    value: params.get('join') ?? '',
    placeholder: 'e.g. K7Q2-9XHD',
  });
  const name = h('input', {
    id: 'join-name',
    name: 'name',
    maxlength: 64,
    value: params.get('name') ?? '',
    placeholder: 'optional, shown to the session owner',
  });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Join session');
  const form = h(
    'form',
    { class: 'card stack', 'aria-labelledby': 'join-title' },
    h('h2', { id: 'join-title' }, 'Join a session'),
    h('p', { class: 'muted' }, 'Open the join link you were given, or paste its code. Your tab becomes one participant of the session.'),
    formNote,
    h('label', { for: 'join-code' }, 'Join code'),
    code,
    h('label', { for: 'join-name' }, 'Your name'),
    name,
    h('div', { class: 'row' }, button),
  );
  const offer = h('section', { class: 'card stack', id: 'public-join', 'aria-labelledby': 'public-join-title' });
  offer.hidden = true;
  if (!params.get('join')) {
    void new CoragClient(ctx.appBase)
      .publicSession()
      .then((open) => {
        if (!open) return;
        const { joinCode } = open;
        const tryIt = h('button', { type: 'button', class: 'primary', id: 'join-public' }, `Join “${open.name}”`);
        tryIt.addEventListener('click', () => {
          code.value = joinCode;
          form.requestSubmit();
        });
        replace(
          offer,
          h('h2', { id: 'public-join-title' }, 'Try it now'),
          h(
            'p',
            { class: 'muted' },
            `This coordinator runs an open session, “${open.name}”, with its models and demo passages: join it to ask questions over them and your own passages, or to take part in its training rounds (it hands you training questions).`,
          ),
          privacyNote('join-privacy'),
          h('div', { class: 'row' }, tryIt),
        );
        offer.hidden = !!ctx.store.state.session;
        formNote.hidden = true;
      })
      .catch(() => undefined);
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    button.textContent = 'Joining…';
    try {
      await ctx.connect(code.value.trim(), name.value.trim());
      location.hash = '#/passages';
    } catch (e) {
      // Loading the model is where a device without enough memory fails first: say so.
      const why = isOutOfMemory(e)
        ? `the session’s model does not fit in this device’s memory (${errorText(e)}). Close other tabs and programs and try again, or join from a device with more memory.`
        : isNetworkError(e)
          ? `no answer from the coordinator (${errorText(e)}). Check the network and that the coordinator is running.`
          : errorText(e);
      ctx.store.notify('error', `Could not join: ${why}`);
    } finally {
      button.disabled = false;
      button.textContent = 'Join session';
    }
  });

  const download = progressBar('Model download');
  const joined = h('section', { class: 'card stack', 'aria-labelledby': 'joined-title' });
  const root = h('div', { class: 'page narrow' }, offer, form, joined);

  return {
    root,
    update() {
      const s = ctx.store.state;
      form.hidden = !!s.credentials && !!s.session;
      if (s.session) offer.hidden = true;
      joined.hidden = !s.session;
      if (!s.session || !s.credentials) return;
      const m = s.model;
      if (m)
        download.set(
          m.ready ? 1 : m.total ? m.loaded / m.total : 0,
          m.ready ? `version ${m.version} ready` : `downloading version ${m.version}: ${formatBytes(m.loaded)}${m.total ? ` of ${formatBytes(m.total)}` : ''}`,
        );
      const leave = h('button', { type: 'button', class: 'ghost', onclick: () => void ctx.leave() }, 'Leave session');
      replace(
        joined,
        h('h2', { id: 'joined-title' }, `Joined “${s.session.config.name}”`),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'You'),
          h('dd', {}, s.credentials.name || s.credentials.clientId),
          h('dt', {}, 'Client id'),
          h('dd', {}, h('code', {}, s.credentials.clientId)),
          h('dt', {}, 'Reader'),
          h('dd', {}, s.session.config.models.reader),
          h('dt', {}, 'Retriever'),
          h('dd', {}, s.session.config.models.passageEncoder),
        ),
        download.root,
        h(
          'div',
          { class: 'row' },
          h('a', { class: 'button primary', href: '#/passages' }, 'Add passages →'),
          h('a', { class: 'button', href: '#/train' }, 'Training'),
          leave,
        ),
      );
    },
  };
}
