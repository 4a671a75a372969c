// Reads the engine's flat step encoding (wit/engine.wit, `operation.feed`): the bytes that
// `start`, `feed`, `lose`, `tick` and the `*-started` constructors return, as the shape of a
// `step-result` (`{ transmits, timeout, outcome, connections }`). Layout only: every decision
// in it is the engine's. An outcome the layout does not carry (status, reset, an error) is
// read with `op.pollOutcome()`.
const VERSION = 1;
const AFTER = ['keep', 'close', 'silent'];
const ascii = new TextDecoder('latin1');

export function decodeStep(bytes, op) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint8(0) !== VERSION) throw new Error(`distlock: unknown engine step encoding ${view.getUint8(0)}`);
  let at = 2;
  const transmits = [];
  for (let i = view.getUint8(1); i > 0; i--) {
    const node = view.getUint8(at), length = view.getUint32(at + 1, true);
    transmits.push({ node, bytes: bytes.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  if (view.getUint8(at) === 0) {
    const timeout = view.getFloat64(at + 1, true);
    return { transmits, timeout: Number.isNaN(timeout) ? undefined : timeout, outcome: undefined, connections: [] };
  }
  let outcome;
  switch (view.getUint8(at + 1)) {
    case 0: {
      const length = view.getUint8(at + 2);
      const token = ascii.decode(bytes.subarray(at + 3, at + 3 + length));
      at += 3 + length;
      const fence = view.getUint8(at) ? view.getBigUint64(at + 1, true) : undefined;
      const started = view.getFloat64(at + 9, true), validUntil = view.getFloat64(at + 17, true);
      outcome = { tag: 'ok', val: { tag: 'acquired', val: { token, fence, started, validUntil } } };
      at += 25;
      break;
    }
    case 1:
      outcome = { tag: 'ok', val: { tag: 'released', val: view.getUint32(at + 2, true) } };
      at += 6;
      break;
    case 2:
      outcome = { tag: 'ok', val: { tag: 'extended', val: { started: view.getFloat64(at + 2, true), validUntil: view.getFloat64(at + 10, true) } } };
      at += 18;
      break;
    default:
      outcome = op.pollOutcome();
      at += 2;
  }
  const connections = [];
  for (let i = view.getUint8(at++); i > 0; i--, at += 5) {
    const tag = AFTER[view.getUint8(at)];
    connections.push(tag === 'keep' ? { tag, val: view.getUint32(at + 1, true) } : { tag });
  }
  return { transmits, timeout: undefined, outcome, connections };
}
