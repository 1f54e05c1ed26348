/**
 * Keeps bearer tokens out of the coordinator's log (`npm start -- --log`). Browsers send the
 * event-stream token as `?token=` (an EventSource cannot set headers), so request URLs carry
 * secrets; every log line passes through `redactSecrets` before it is written, and the request
 * serializer redacts the URL too, so no path through the logger writes a token in full.
 */

const QUERY_TOKEN = /([?&;](?:token|key|access_token)=)[^&\s"'#\\]*/gi;
const BEARER = /(Bearer\s+)[^\s"'\\,]+/gi;

/** `text` with every `?token=…` value and `Bearer …` credential replaced by `[redacted]`. */
export function redactSecrets(text: string): string {
  return text.replace(QUERY_TOKEN, '$1[redacted]').replace(BEARER, '$1[redacted]');
}

/** Where log lines go: anything with `write(line)` (process.stdout, a test's collector). */
export interface LogSink {
  write(line: string): unknown;
}

/** A pino destination that redacts each line before handing it to `sink`. */
export function redactingSink(sink: LogSink): LogSink {
  return { write: (line: string) => sink.write(redactSecrets(String(line))) };
}

/** The fields of a request worth logging, with its URL redacted (Fastify `serializers.req`). */
export function serializeRequest(req: {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}): Record<string, unknown> {
  return { method: req.method, url: redactSecrets(req.url ?? ''), host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}
