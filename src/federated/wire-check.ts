/**
 * The client's gate on what the coordinator sends: every JSON answer and every event is checked
 * against its schema in ./protocol (the same TypeBox definitions the server validates with and
 * publishes) before anything acts on it. A value that does not match throws a CoragProtocolError
 * naming the answer or event and the first field that is wrong; it is never cast into shape.
 */
import type { Static, TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { serverEventSchemas, type ServerEvent } from './protocol';

/** The coordinator sent something the protocol does not allow (a bug or a hostile server): nothing acted on it. */
export class CoragProtocolError extends Error {
  constructor(
    /** What was being read: `GET /api/sessions/:id answer`, `server event "round-opened"`. */
    readonly what: string,
    /** JSON pointer of the first wrong field ('' for the value itself). */
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${what} does not match the protocol: ${field || 'the value'} ${problem}`);
    this.name = 'CoragProtocolError';
  }
}

/** `value` as `schema`'s type, or a CoragProtocolError naming `what` and the first wrong field. */
export function checkWire<T extends TSchema>(schema: T, value: unknown, what: string): Static<T> {
  if (Value.Check(schema, value)) return value;
  const [first] = Value.Errors(schema, value);
  throw new CoragProtocolError(what, first?.instancePath ?? '', first?.message ?? 'has the wrong shape');
}

const isEventType = (name: string): name is keyof typeof serverEventSchemas => Object.hasOwn(serverEventSchemas, name);

/**
 * One SSE message (`event:` name, `data:` text) as a ServerEvent. Undefined for an event type this
 * client does not know (a newer coordinator may send more; nothing here would act on it); a known
 * type whose data is not JSON, names another type, or does not match its schema throws.
 */
export function parseServerEvent(name: string, data: string): ServerEvent | undefined {
  if (!isEventType(name)) return undefined;
  const what = `server event "${name}"`;
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    throw new CoragProtocolError(what, '', 'is not JSON');
  }
  return checkWire(serverEventSchemas[name], json, what);
}
