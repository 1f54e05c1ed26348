/**
 * The order in which pretraining visits its examples and passages: a fresh shuffle every epoch,
 * derived from (seed, stream, epoch) alone, so that a saved cursor (epoch, position) is all a
 * resumed run needs to draw exactly the batches the interrupted one would have drawn next.
 */
import { Rng } from './rng';

/** A cursor over a fixed set of items in a per-epoch shuffled order derived from (seed, epoch). */
export interface DataPosition {
  readonly epoch: number;
  readonly cursor: number;
}

/** The examples' stream and the contrastive passages' stream: two independent shuffles. */
export const EXAMPLE_STREAM = 1;
export const PASSAGE_STREAM = 2;

function seedFor(seed: number, stream: number, epoch: number): number {
  return (Math.imul(seed, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b) ^ Math.imul(epoch + 1, 0xc2b2ae35)) | 0;
}

export class EpochOrders {
  /** The one order in use (a step reads one stream at a time; an epoch's order is cheap to redo). */
  private readonly orders = new Map<string, number[]>();

  constructor(private readonly seed: number) {}

  private order(stream: number, epoch: number, n: number): number[] {
    const key = `${stream}:${epoch}`;
    let o = this.orders.get(key);
    if (!o) {
      this.orders.clear();
      o = new Rng(seedFor(this.seed, stream, epoch)).permutation(n);
      this.orders.set(key, o);
    }
    return o;
  }

  /** The next `count` of `n` items of a stream's per-epoch shuffled order, and the advanced cursor. */
  take(stream: number, pos: DataPosition, n: number, count: number): { items: number[]; pos: DataPosition } {
    let { epoch, cursor } = pos;
    const items: number[] = [];
    while (items.length < count) {
      if (cursor >= n) {
        epoch++;
        cursor = 0;
      }
      items.push(this.order(stream, epoch, n)[cursor++]);
    }
    return { items, pos: { epoch, cursor } };
  }
}
