/**
 * Passage windows: which `size` tokens of a long passage the reader sees with a pretraining
 * example. A cloze example's window must hold its answer, a masked-span example's its first masked
 * span, anything else a random stretch; a passage no longer than the window is taken whole.
 */
import type { Rng } from './rng';

/** Where `run` first occurs as consecutive ids in `ids`; -1 when it does not (or is empty). */
function indexOfRun(ids: readonly number[], run: readonly number[]): number {
  for (let i = 0; run.length > 0 && i + run.length <= ids.length; i++) {
    if (run.every((t, k) => ids[i + k] === t)) return i;
  }
  return -1;
}

/**
 * `size` tokens of a passage around a cloze answer: the answer's ids (the target without its
 * leading sentinel and final EOS) are looked up in the passage and the window starts a random
 * number of tokens before them, so the answer sits anywhere in it. The passage's first `size`
 * tokens when the answer is not found as is (tokenized differently in context).
 */
export function answerWindow(passageIds: readonly number[], target: readonly number[], size: number, rng: Rng): number[] {
  if (passageIds.length <= size) return [...passageIds];
  const answer = target.slice(1, -1);
  const at = indexOfRun(passageIds, answer);
  if (at < 0) return passageIds.slice(0, size);
  const slack = Math.max(0, size - answer.length);
  const start = Math.min(passageIds.length - size, Math.max(0, at - rng.int(slack + 1)));
  return passageIds.slice(start, start + size);
}

/** `size` consecutive tokens of a passage at a random place; a shorter passage whole. */
export function randomWindow(passageIds: readonly number[], size: number, rng: Rng): number[] {
  if (passageIds.length <= size) return [...passageIds];
  const start = rng.int(passageIds.length - size + 1);
  return passageIds.slice(start, start + size);
}

/**
 * `size` tokens of a passage holding a masked-span window: they start `lead` tokens before the
 * first masked span (`anchor`), so the spans after it fit too. The first `size` tokens when the
 * span is not found as is.
 */
export function spanWindow(passageIds: readonly number[], anchor: readonly number[], size: number, lead = 8): number[] {
  if (passageIds.length <= size) return [...passageIds];
  const at = indexOfRun(passageIds, anchor);
  const start = at < 0 ? 0 : Math.min(passageIds.length - size, Math.max(0, at - lead));
  return passageIds.slice(start, start + size);
}
