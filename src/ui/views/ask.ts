/** QA view: a question, the top passages with scores, and the reader's answer highlighted in them. */
import { h, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { highlightOccurrences } from '../highlight';
import type { RetrievalScope } from '../../../workers/protocol';

export function askView(ctx: AppContext): View {
  const question = h('input', { id: 'question', type: 'search', required: true, maxlength: 500, placeholder: 'e.g. When was the university founded?' });
  const scope = h(
    'select',
    { id: 'scope' },
    h('option', { value: 'both' }, 'Your passages and the session store'),
    h('option', { value: 'yours' }, 'Your passages only (private)'),
    h('option', { value: 'shared' }, 'The session store only'),
  );
  const k = h('input', { id: 'k', type: 'number', min: 1, max: 20, value: 5 });
  // Quoting keeps answers to text that is in the passages, which the small offline demo reader
  // does not manage on its own (docs/MODEL-CARD.md). Free generation is what the paper evaluates.
  const extractive = h('input', { id: 'extractive', type: 'checkbox', checked: true });
  // Keyword matches find passages that share the question's rare words, which the small demo
  // retriever often misses (src/corag/hybrid-retrieval.ts). Training always retrieves densely.
  const hybrid = h('input', { id: 'hybrid', type: 'checkbox', checked: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Ask');
  const result = h('div', { id: 'answer', class: 'stack', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card stack', 'aria-labelledby': 'ask-title' },
    h('h2', { id: 'ask-title' }, 'Ask'),
    h('label', { for: 'question' }, 'Question'),
    question,
    h(
      'div',
      { class: 'row' },
      h('label', { for: 'scope' }, 'Search'),
      scope,
      h('label', { for: 'k' }, 'Passages'),
      k,
      h('label', { for: 'extractive', title: 'The answer must be words copied from the retrieved passages' }, extractive, ' Quote from passages'),
      h(
        'label',
        { for: 'hybrid', title: 'Also rank your passages by shared words (BM25) and fuse both rankings; the session store is searched by the retriever only' },
        hybrid,
        ' Keyword search too',
      ),
      button,
    ),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!question.value.trim()) return;
    button.disabled = true;
    replace(result, h('p', { class: 'muted' }, 'Retrieving and reading…'));
    try {
      const r = await ctx.train.ask(
        question.value.trim(),
        scope.value as RetrievalScope,
        Math.max(1, Math.min(20, Number(k.value) || 5)),
        extractive.checked,
        hybrid.checked,
      );
      if (r.passages.length === 0) {
        replace(result, h('p', {}, 'No passages to read from: add passages or choose the session store.'));
        return;
      }
      replace(
        result,
        h(
          'div',
          { class: 'answer-box' },
          h(
            'span',
            { class: 'muted small' },
            `Answer${r.extractive ? ', quoted from the passages' : ''}${r.rerankedFrom ? ` (the best of the reader's ${r.rerankedFrom} spans for this kind of question)` : ''}${r.hybrid ? '; passages by retriever + keywords' : ''} (model v${r.version ?? '—'}, ${(r.millis / 1000).toFixed(1)} s)`,
          ),
          h('p', { class: 'answer-text', id: 'answer-text' }, r.answer || '(empty answer)'),
        ),
        h(
          'ol',
          { class: 'passages', id: 'answer-passages' },
          ...r.passages.map((p) => {
            const text = h('p', {});
            for (const seg of highlightOccurrences(p.text, r.answer)) text.appendChild(seg.match ? h('mark', {}, seg.text) : document.createTextNode(seg.text));
            return h(
              'li',
              { class: 'passage' },
              h(
                'div',
                { class: 'passage-head' },
                h('strong', {}, p.title || '(untitled)'),
                h('span', { class: `pill ${p.source}` }, p.source === 'yours' ? 'yours' : 'shared'),
                h('span', { class: 'score', title: 'retriever score (inner product)' }, `score ${p.score.toFixed(3)}`),
                h('span', { class: 'score', title: "share of the reader's cross-attention" }, `attention ${(p.attention * 100).toFixed(0)}%`),
              ),
              text,
            );
          }),
        ),
      );
    } catch (e) {
      replace(result, h('p', { class: 'notice error', role: 'alert' }, errorText(e)));
    } finally {
      button.disabled = false;
    }
  });
  const root = h('div', { class: 'page narrow' }, form, result);
  return {
    root,
    update() {
      button.disabled = !ctx.store.state.model?.ready;
    },
  };
}
