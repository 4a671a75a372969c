// The typed errors of the Node API, one class per way a lock call can fail, made from the
// engine's `error` variant (wit/engine.wit). `detail` keeps the engine's own value.

/** Any distlock failure; `code` is the engine's error case (`not-acquired`, `quorum-lost`, …). */
export class DistlockError extends Error {
  constructor(message, code, detail) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
}
/** The lock is held by another owner and the wait ran out. */
export class NotAcquired extends DistlockError {}
/** The lease no longer holds the lock (expired, released, or reset): stop acting as owner. */
export class LockLost extends DistlockError {}
/** Too few nodes answered for a majority (down, frozen, unreachable). */
export class Unavailable extends DistlockError {}
/** A name, TTL, URL or option is unusable; nothing was sent. */
export class InvalidArgument extends DistlockError {}
/** A server refused a command or broke the protocol (`WRONGTYPE`, `NOPERM`, not RESP). */
export class ServerError extends DistlockError {}

/** The engine's `error` value as one of the classes above. */
export function fromEngine(error) {
  const { tag, val } = error;
  switch (tag) {
    case 'not-acquired':
      return new NotAcquired(`the lock is held by another owner (${val.attempts} attempts)`, tag, val);
    case 'not-held':
      return new LockLost('the lease no longer holds the lock', tag, val);
    case 'expired':
      return new LockLost("the lease's validity ran out", tag, val);
    case 'quorum-lost':
      return new Unavailable(`${val.granted} of ${val.nodes} nodes granted; a majority needs ${val.needed}`, tag, val);
    case 'unavailable':
      return new Unavailable(val, tag, val);
    case 'invalid':
      return new InvalidArgument(val.message, tag, val);
    case 'server':
      return new ServerError(`node ${val.node}: ${val.error.message}`, tag, val);
    case 'protocol':
      return new ServerError(`node ${val.node} broke the protocol (${val.error})`, tag, val);
    default:
      return new DistlockError(`distlock: ${tag}`, tag, val);
  }
}

/** Runs `fn`, turning a thrown engine error into a typed one. */
export function engineCall(fn) {
  try {
    return fn();
  } catch (e) {
    throw e && typeof e === 'object' && 'tag' in e ? fromEngine(e) : e;
  }
}
