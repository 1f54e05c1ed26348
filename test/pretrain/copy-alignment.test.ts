import { describe, expect, it } from 'vitest';
import { copyAlignment } from '../../src/pretrain/copy-alignment';

// Token ids only; the question is ids 100…, passages 200…, sentinels 7/8, EOS 1.
const L = 20;

describe('copyAlignment', () => {
  it('aligns each copied target token to its place in the passage, and leaves sentinels and EOS unaligned', () => {
    const question = [100, 101, 102, 7];
    const row = [...question, 201, 101, 102, 300, 301, 203, 1];
    const got = copyAlignment([7, 300, 301, 1], [{ ids: row, passageStart: question.length, passageEnd: row.length - 1 }], question, L);
    expect(got).toEqual([[], [7], [8], []]);
  });

  it('of several occurrences, keeps the one whose neighbours the question shares', () => {
    const question = [100, 101, 7];
    // 300 occurs at 4 (among unrelated ids) and at 12 (after 100 101, the question's words).
    const row = [...question, 250, 300, 251, 252, 253, 254, 255, 100, 101, 300, 256, 1];
    const got = copyAlignment([7, 300, 1], [{ ids: row, passageStart: question.length, passageEnd: row.length - 1 }], question, L);
    expect(got[1]).toEqual([12]);
  });

  it('keeps every occurrence that ties, across the passages of a FiD example (positions in the fused sequence)', () => {
    const question = [100, 7];
    const a = [...question, 250, 300, 1];
    const b = [...question, 251, 300, 1];
    const got = copyAlignment(
      [7, 300, 1],
      [a, b].map((ids) => ({ ids, passageStart: question.length, passageEnd: ids.length - 1 })),
      question,
      L,
    );
    expect(got[1]).toEqual([3, L + 3]);
  });

  it('does not look in the question part or at the row end, and aligns nothing that the passages lack', () => {
    const question = [100, 300, 7];
    const row = [...question, 250, 251, 1];
    const got = copyAlignment([7, 300, 1], [{ ids: row, passageStart: question.length, passageEnd: row.length - 1 }], question, L);
    expect(got).toEqual([[], [], []]);
  });

  it('aligns a multi-token run as a whole (the longest run a passage holds), then the next run separately', () => {
    const question = [100, 7, 8];
    const row = [...question, 300, 301, 302, 250, 400, 401, 1];
    // Target: span 1 = 301 302 (run inside 300 301 302), span 2 = 400 401.
    const got = copyAlignment([7, 301, 302, 8, 400, 401, 1], [{ ids: row, passageStart: question.length, passageEnd: row.length - 1 }], question, L);
    expect(got).toEqual([[], [4], [5], [], [7], [8], []]);
  });
});
