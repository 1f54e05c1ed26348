import { describe, expect, it } from 'vitest';
import { coalesced } from '../../src/ui/passage-sync';

/** A promise and its resolver, to hold a pass open while other calls arrive. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('coalesced passes', () => {
  it('runs one pass at a time: calls during a pass ask for exactly one more pass after it', async () => {
    const gates = [gate(), gate()];
    let passes = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const run = coalesced(async () => {
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await gates[passes++]?.promise;
      concurrent--;
    });
    const first = run();
    // Three requests while the first pass runs: they resolve false at once, and one more pass follows.
    expect(await Promise.all([run(), run(), run()])).toEqual([false, false, false]);
    gates[0].open();
    await Promise.resolve();
    gates[1].open();
    expect(await first).toBe(true);
    expect(passes).toBe(2);
    expect(maxConcurrent).toBe(1);
    // Idle again: the next call runs a pass of its own.
    expect(await run()).toBe(true);
    expect(passes).toBe(3);
  });

  it('a failing pass rejects its caller and leaves the runner usable', async () => {
    let fail = true;
    const run = coalesced(async () => {
      if (fail) throw new Error('disk full');
    });
    await expect(run()).rejects.toThrow('disk full');
    fail = false;
    await expect(run()).resolves.toBe(true);
  });
});
