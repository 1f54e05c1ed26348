/**
 * The participant's memory budget for training (src/corag/training-fit.ts): a `?memoryBudget=`
 * URL parameter ("512MB", "2GB") or the `corag.memoryBudget` setting kept in localStorage. Without
 * either the training worker uses its default (half the device memory the browser reports).
 */
import { parseMemoryBudget } from '../corag/training-fit';

export const MEMORY_BUDGET_KEY = 'corag.memoryBudget';

/** The budget in bytes, or undefined for the default. An unreadable value is an error naming it. */
export function readMemoryBudget(): number | undefined {
  const fromUrl = new URLSearchParams(location.search).get('memoryBudget');
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(MEMORY_BUDGET_KEY);
  } catch {
    stored = null;
  }
  const text = fromUrl ?? stored;
  return text ? parseMemoryBudget(text) : undefined;
}
