/** Sentences of a passage (split after . ! ? followed by a space and an upper-case letter or digit). */
export function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+(?=[A-Z0-9"])/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
