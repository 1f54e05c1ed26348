/**
 * Where in the reader's input each target token can be copied from: the alignments that
 * copy-attention supervision (src/model/t5/copy-attention.ts) trains one cross-attention head on.
 *
 * A target (`<extra_id_0> February 7 , 2016 </s>`, or several masked spans) is cut into runs of
 * tokens that occur consecutively in a passage part of the input; each run is aligned to its
 * occurrence whose surroundings share most tokens with the question (the answer of a cloze
 * question sits where the question's words are; a masked span where the window's words are). Ties
 * keep every tied occurrence. Tokens found nowhere (sentinels, EOS, text the passage does not
 * hold) get no alignment and are not supervised.
 */

/** One encoder row of a FiD example: the ids, and where its passage part starts and ends. */
export interface AlignmentRow {
  readonly ids: readonly number[];
  /** First index of the passage part (after the question). */
  readonly passageStart: number;
  /** One past the last passage index (the row's final EOS is not part of it). */
  readonly passageEnd: number;
}

/** Tokens on each side of an occurrence compared with the question. */
const CONTEXT = 4;

interface Occurrence {
  /** Row within the example. */
  readonly row: number;
  /** Index in the row of the run's first token. */
  readonly at: number;
}

/** Every passage position, over all rows, that holds `token`. */
function occurrences(rows: readonly AlignmentRow[], token: number): Occurrence[] {
  const out: Occurrence[] = [];
  rows.forEach((r, row) => {
    for (let at = r.passageStart; at < r.passageEnd; at++) if (r.ids[at] === token) out.push({ row, at });
  });
  return out;
}

function contextScore(r: AlignmentRow, at: number, length: number, question: ReadonlySet<number>): number {
  let score = 0;
  for (let i = Math.max(r.passageStart, at - CONTEXT); i < at; i++) if (question.has(r.ids[i])) score++;
  for (let i = at + length; i < Math.min(r.passageEnd, at + length + CONTEXT); i++) if (question.has(r.ids[i])) score++;
  return score;
}

/**
 * For every target position, the fused encoder positions (row · rowLength + index) that hold the
 * token it predicts; an empty list where it is not copied. `question` are the ids of the question
 * part (the same in every row of the example).
 */
export function copyAlignment(target: readonly number[], rows: readonly AlignmentRow[], question: readonly number[], rowLength: number): number[][] {
  const asked = new Set(question);
  const out: number[][] = target.map(() => []);
  let t = 0;
  while (t < target.length) {
    // The longest run starting at t that some passage holds: the occurrences of its first token,
    // narrowed while the next target token follows them in the passage.
    let found = occurrences(rows, target[t]);
    if (found.length === 0) {
      t++;
      continue;
    }
    let length = 1;
    while (t + length < target.length) {
      const next = found.filter((o) => o.at + length < rows[o.row].passageEnd && rows[o.row].ids[o.at + length] === target[t + length]);
      if (next.length === 0) break;
      found = next;
      length++;
    }
    const scores = found.map((o) => contextScore(rows[o.row], o.at, length, asked));
    const best = Math.max(...scores);
    found.forEach((o, i) => {
      if (scores[i] !== best) return;
      for (let j = 0; j < length; j++) out[t + j].push(o.row * rowLength + o.at + j);
    });
    t += length;
  }
  return out;
}
