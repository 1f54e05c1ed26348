/**
 * Reads a binary upload (weight delta or global model) off the socket under limits a hostile
 * sender cannot stretch: a byte limit (the declared Content-Length is checked before anything is
 * read), an idle timeout and a minimum average rate (a trickling sender is cut off and its upload
 * slot freed), and a bound on the safetensors header length, checked from the first 8 bytes so a
 * 95 MB JSON header is refused before it is read or parsed. The HTTP layer calls it only after the
 * sender was authenticated and admitted (server/app.ts); JSON bodies get the same pacing through
 * `pacedStream`. Update bodies are streamed into a temp file as they arrive (`receiveUploadToFile`,
 * O(chunk) memory); model bodies are collected into one buffer (`readUploadBody`).
 */
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
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
        return stopWith(
          new ApiError(
            408,
            'body_too_slow',
            `the body arrives at ${Math.round((received * 1000) / elapsed)} bytes/s; at least ${limits.minBytesPerSecond} are needed`,
          ),
        );
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

/** Where an upload's bytes go as they arrive: `write` each chunk in order; `done` or `abort` once. */
interface UploadSink<T> {
  write(chunk: Buffer, at: number): void;
  done(received: number): T;
  abort(): void;
}

/**
 * Collects `stream` into one Buffer, refusing (with an ApiError) as soon as a limit is broken; after
 * a refusal the rest of the stream is discarded, not buffered. Used for model uploads; update bodies
 * go to a file (`receiveUploadToFile`).
 */
export function readUploadBody(stream: Readable, declared: number | undefined, limits: UploadBodyLimits, now: () => number = Date.now): Promise<Buffer> {
  // With a declared length the body goes straight into one buffer of that size (allocated
  // unfilled, so memory is committed only as bytes arrive; no second copy at the end);
  // without one (chunked), chunks are joined at the end.
  let whole: Buffer | undefined;
  let chunks: Buffer[] = [];
  return receiveUpload(stream, declared, limits, now, {
    write(chunk, at) {
      if (declared !== undefined) {
        whole ??= Buffer.allocUnsafeSlow(declared);
        chunk.copy(whole, at);
      } else chunks.push(chunk);
    },
    done(received) {
      return whole ?? (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
    },
    abort() {
      chunks = [];
      whole = undefined;
    },
  });
}

/** An upload body on disk, as `receiveUploadToFile` leaves it. */
export interface UploadedFile {
  readonly path: string;
  readonly bytes: number;
}

/**
 * Streams `stream` into a new file at `path` (created exclusively) under the same limits as
 * readUploadBody, holding one arriving chunk at a time in memory. A body cut off or refused deletes
 * its file before the promise rejects; a complete one is left for the caller (closed, not fsynced:
 * it is a temp file no durable state names).
 */
export function receiveUploadToFile(
  stream: Readable,
  declared: number | undefined,
  limits: UploadBodyLimits,
  path: string,
  now: () => number = Date.now,
): Promise<UploadedFile> {
  let fd: number | undefined;
  const closeFile = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  return receiveUpload(stream, declared, limits, now, {
    write(chunk) {
      fd ??= openSync(path, 'wx');
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
    },
    done(received) {
      if (fd === undefined) writeFileSync(path, new Uint8Array(0), { flag: 'wx' });
      closeFile();
      return { path, bytes: received };
    },
    abort() {
      closeFile();
      rmSync(path, { force: true });
    },
  });
}

function receiveUpload<T>(stream: Readable, declared: number | undefined, limits: UploadBodyLimits, now: () => number, sink: UploadSink<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      checkDeclaredLength(declared, limits.maxBytes);
    } catch (e) {
      reject(e);
      return;
    }
    let received = 0;
    let headerChecked = limits.maxSafetensorsHeaderBytes === undefined;
    /** The body's first bytes, until the 8 of the safetensors header length are in. */
    let first8 = Buffer.alloc(0);
    let settled = false;

    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      pace.stop();
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onAbort);
      stream.off('aborted', onAbort);
      stream.off('close', onClose);
      let result: T | undefined;
      if (!error) {
        try {
          result = sink.done(received);
        } catch (e) {
          error = e as Error;
        }
      }
      if (error) {
        try {
          sink.abort();
        } catch {
          /* the refusal below is what the sender needs to hear */
        }
        // Keep the stream flowing into nothing: the sender's remaining bytes are not buffered.
        stream.resume();
        reject(error);
      } else resolve(result!);
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
      try {
        sink.write(chunk, received - chunk.length);
      } catch (e) {
        finish(e as Error);
        return;
      }
      if (!headerChecked) {
        first8 = Buffer.concat([first8, chunk.subarray(0, 8 - first8.length)]);
        if (first8.length >= 8) {
          headerChecked = true;
          const headerBytes = first8.readBigUInt64LE(0);
          if (headerBytes > BigInt(limits.maxSafetensorsHeaderBytes!)) {
            finish(
              badRequest(
                'header_too_large',
                `the safetensors header declares ${headerBytes} bytes; at most ${limits.maxSafetensorsHeaderBytes} are accepted for this upload`,
              ),
            );
            return;
          }
        }
      }
      pace.arrived(chunk.length);
    };
    const onEnd = () => {
      if (declared !== undefined && received !== declared) {
        finish(badRequest('body_incomplete', `the body ended after ${received} of the ${declared} declared bytes`));
        return;
      }
      finish(undefined);
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
