// Reads the engine's flat step encoding (wit/engine.wit, `operation.feed`): the bytes that
// `start`, `feed`, `lose`, `lend`, `tick` and the `*-started` constructors return, and its slotted
// form (src/slots.js) that the session-level `*-flat` calls return. Layout only: every
// decision in it is the engine's. An outcome the layout does not carry (status, reset, an
// error) is read with `op.pollOutcome()`.
//
// Allocation is kept to what the caller keeps: the transmits go straight to `write`, the
// step comes back in one record reused by every call (read it before the next call), and the
// bytes are read through a DataView kept while they share one buffer.
import { leanFeed } from '../generated/engine.js';

import { Slot } from './slots.js';

/** `op.feed(now, node, bytes)`, by the lean call scripts/build.js adds where it could (once per reply: ~1.4 us against jco's ~3.7); a `Slot` feeds by its own. */
export const feed = leanFeed ? (op, now, node, bytes) => (op instanceof Slot ? op.feed(now, node, bytes) : leanFeed(op, now, node, bytes))
  : (op, now, node, bytes) => op.feed(now, node, bytes);

const VERSION = 1, SLOTTED = 2; // SLOTTED: the session-level flat calls' layout, the u32 slot after the version byte
const ascii = new TextDecoder('latin1');
/** The step just read: `timeout` while pending; once over, `outcome` and `owed` per node. */
const step = { timeout: undefined, outcome: undefined, owed: [] };

/**
 * Reads one step: calls `write(node, bytes)` per transmit, in order, and returns the reused
 * record `{ timeout, outcome, owed }`. `timeout`: when to `tick` (undefined: only on an
 * event). `outcome`: a `result<outcome, error>` once over, undefined before. `owed[node]`,
 * with the outcome: replies the node's connection still owes (keep it), or -1 (close it:
 * out of step, or silent, which the engine already told the session).
 */
export function decodeStep(bytes, op, write) {
  const version = bytes[0], start = bytes.byteOffset, view = viewOf(bytes.buffer);
  // An empty answer: the engine knows no such slot.
  if (version !== VERSION && version !== SLOTTED) throw new Error(`distlock: unknown engine step encoding ${version}`);
  let at = start + (version === SLOTTED ? 5 : 1) + 1; // `at`: a position in the buffer, `at - start` in `bytes`
  for (let i = view.getUint8(at - 1); i > 0; i--) {
    const node = view.getUint8(at), length = view.getUint32(at + 1, true), from = at + 5 - start;
    write(node, bytes.subarray(from, from + length));
    at += 5 + length;
  }
  step.owed.length = 0;
  if (view.getUint8(at) === 0) {
    const timeout = view.getFloat64(at + 1, true);
    step.timeout = Number.isNaN(timeout) ? undefined : timeout;
    step.outcome = undefined;
    return step;
  }
  step.timeout = undefined;
  switch (view.getUint8(at + 1)) {
    case 0: {
      const length = view.getUint8(at + 2), from = at + 3 - start;
      const token = ascii.decode(bytes.subarray(from, from + length));
      at += 3 + length;
      const fence = view.getUint8(at) ? view.getBigUint64(at + 1, true) : undefined;
      const started = view.getFloat64(at + 9, true), validUntil = view.getFloat64(at + 17, true);
      step.outcome = { tag: 'ok', val: { tag: 'acquired', val: { token, fence, started, validUntil } } };
      at += 25;
      break;
    }
    case 1:
      step.outcome = { tag: 'ok', val: { tag: 'released', val: view.getUint32(at + 2, true) } };
      at += 6;
      break;
    case 2:
      step.outcome = { tag: 'ok', val: { tag: 'extended', val: { started: view.getFloat64(at + 2, true), validUntil: view.getFloat64(at + 10, true) } } };
      at += 18;
      break;
    default:
      step.outcome = op.pollOutcome();
      at += 2;
  }
  // Per node: 0 keep (then u32 replies owed), 1 close, 2 silent.
  for (let i = view.getUint8(at++); i > 0; i--, at += 5) step.owed.push(view.getUint8(at) === 0 ? view.getUint32(at + 1, true) : -1);
  return step;
}

// A DataView of the buffer a step's bytes sit in, made again only for another buffer: the
// lean calls' answers share Node's `Buffer` pool, so most steps are read through one view.
let viewed = null, viewing = null;
function viewOf(buffer) {
  if (buffer !== viewed) { viewed = buffer; viewing = new DataView(buffer); }
  return viewing;
}
