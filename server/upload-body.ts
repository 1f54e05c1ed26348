/**
 * Reads a binary upload (weight delta or global model) off the socket under limits a hostile
 * sender cannot stretch: a byte limit (the declared Content-Length is checked before anything is
 * read), an idle timeout and a minimum average rate (a trickling sender is cut off and its upload
 * slot freed), and a bound on the safetensors header length, checked from the first 8 bytes so a
 * 95 MB JSON header is refused before it is read or parsed. The HTTP layer calls it only after the
 * sender was authenticated and admitted (server/app.ts); JSON bodies get the same pacing through
 * `pacedStream`.
 */
import { PassThrough, type Readable } from 'node:stream';
import { ApiError, badRequest } from './errors';

export interface UploadBodyLimits {
  /** Largest body accepted (413 `body_too_large` beyond). */
  readonly maxBytes: number;
  /** No byte for this long: 408 `body_timeout`. */
  readonly idleTimeoutMs: number;
  /**
   * Once a body has been arriving for longer than `idleTimeoutMs`, its average rate must stay at or
   * above this (408 `body_too_slow`), so one byte just inside every idle timeout does not hold a slot.
   */
  readonly minBytesPerSecond: number;
  /** Largest safetensors header (the little-endian u64 in bytes 0..8); absent: not checked. */
  readonly maxSafetensorsHeaderBytes?: number;
}

export type BodyPaceLimits = Pick<UploadBodyLimits, 'idleTimeoutMs' | 'minBytesPerSecond'>;

/** What `watchPace` returns: report each arrival (false once the body was cut off), stop when done. */
export interface BodyPace {
  arrived(bytes: number): boolean;
  stop(): void;
}

/**
 * Watches how fast a body arrives: `cut` is called once, with a 408, when no byte arrived for
 * `idleTimeoutMs` (`body_timeout`), or when the body has been arriving for longer than that and
 * its average rate is below `minBytesPerSecond` (`body_too_slow`).
 */
export function watchPace(limits: BodyPaceLimits, cut: (refusal: ApiError) => void, now: () => number = Date.now): BodyPace {
  const started = now();
  let received = 0;
  let stopped = false;
  const stopWith = (refusal: ApiError): false => {
    stop();
    cut(refusal);
    return false;
  };
  const idle = setTimeout(
    () => stopWith(new ApiError(408, 'body_timeout', `no body bytes arrived for ${limits.idleTimeoutMs} ms (${received} received); send it again`)),
    limits.idleTimeoutMs,
  );
  const stop = () => {
    stopped = true;
    clearTimeout(idle);
  };
  return {
    arrived(bytes: number): boolean {
      if (stopped) return false;
      received += bytes;
      const elapsed = now() - started;
      if (elapsed > limits.idleTimeoutMs && (received * 1000) / elapsed < limits.minBytesPerSecond) {
        return stopWith(new ApiError(408, 'body_too_slow', `the body arrives at ${Math.round((received * 1000) / elapsed)} bytes/s; at least ${limits.minBytesPerSecond} are needed`));
      }
      idle.refresh();
      return true;
    },
    stop,
  };
}

/**
 * `source` passed through unchanged under `watchPace`: the stream Fastify's own parsers (JSON) read
 * from, so a trickled JSON body is cut off like a trickled upload (the stream errors with the 408).
 */
export function pacedStream(source: Readable, limits: BodyPaceLimits): Readable {
  const out = new PassThrough();
  const pace = watchPace(limits, (refusal) => {
    source.unpipe(out);
    source.resume(); // the rest is discarded, not buffered
    out.destroy(refusal);
  });
  source.on('data', (chunk: Buffer) => pace.arrived(chunk.length));
  source.once('end', pace.stop);
  source.once('error', (e) => {
    pace.stop();
    out.destroy(e);
  });
  out.once('close', pace.stop);
  source.pipe(out);
  return out;
}

/** Bytes of safetensors header a body with `tensors` tensors may plausibly need: JSON entry + metadata room. */
export function safetensorsHeaderBound(tensors: number): number {
  return 64 * 1024 + 256 * tensors;
}

export const tooLarge = (message: string) => new ApiError(413, 'body_too_large', message);

/** Refuses a declared Content-Length over the limit before any of the body is read. */
export function checkDeclaredLength(declared: number | undefined, maxBytes: number): void {
  if (declared !== undefined && declared > maxBytes) {
    throw tooLarge(`the body declares ${declared} bytes; this route accepts at most ${maxBytes}`);
  }
}

/** The request's Content-Length when it is a plain decimal number. */
export function declaredLength(header: string | string[] | undefined): number | undefined {
  return typeof header === 'string' && /^\d{1,16}$/.test(header) ? Number(header) : undefined;
}

/**
 * Collects `stream` into one Buffer, refusing (with an ApiError) as soon as a limit is broken; after
 * a refusal the rest of the stream is discarded, not buffered.
 */
export function readUploadBody(stream: Readable, declared: number | undefined, limits: UploadBodyLimits, now: () => number = Date.now): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    try {
      checkDeclaredLength(declared, limits.maxBytes);
    } catch (e) {
      reject(e);
      return;
    }
    // With a declared length the body goes straight into one buffer of that size (allocated
    // unfilled, so memory is committed only as bytes arrive; no second copy at the end);
    // without one (chunked), chunks are joined at the end.
    let whole: Buffer | undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    let headerChecked = limits.maxSafetensorsHeaderBytes === undefined;
    let settled = false;

    const finish = (error: Error | undefined, body?: Buffer) => {
      if (settled) return;
      settled = true;
      pace.stop();
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onAbort);
      stream.off('aborted', onAbort);
      stream.off('close', onClose);
      chunks.length = 0;
      whole = undefined;
      if (error) {
        // Keep the stream flowing into nothing: the sender's remaining bytes are not buffered.
        stream.resume();
        reject(error);
      } else resolve(body!);
    };
    const pace = watchPace(limits, (refusal) => finish(refusal), now);

    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limits.maxBytes) {
        finish(tooLarge(`the body exceeds ${limits.maxBytes} bytes`));
        return;
      }
      if (declared !== undefined && received > declared) {
        finish(badRequest('body_length_mismatch', `the body is longer than the ${declared} bytes it declared`));
        return;
      }
      if (declared !== undefined) {
        whole ??= Buffer.allocUnsafeSlow(declared);
        chunk.copy(whole, received - chunk.length);
      } else chunks.push(chunk);
      if (!headerChecked && received >= 8) {
        headerChecked = true;
        const first8 = whole ?? (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
        const headerBytes = first8.readBigUInt64LE(0);
        if (headerBytes > BigInt(limits.maxSafetensorsHeaderBytes!)) {
          finish(badRequest('header_too_large', `the safetensors header declares ${headerBytes} bytes; at most ${limits.maxSafetensorsHeaderBytes} are accepted for this upload`));
          return;
        }
      }
      pace.arrived(chunk.length);
    };
    const onEnd = () => {
      if (declared !== undefined && received !== declared) {
        finish(badRequest('body_incomplete', `the body ended after ${received} of the ${declared} declared bytes`));
        return;
      }
      finish(undefined, whole ?? (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received)));
    };
    const onAbort = () => finish(badRequest('body_incomplete', `the sender stopped after ${received} bytes`));
    const onClose = () => setImmediate(() => finish(badRequest('body_incomplete', `the connection closed after ${received} bytes`)));

    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onAbort);
    stream.on('aborted', onAbort);
    stream.on('close', onClose);
  });
}
