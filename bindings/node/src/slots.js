// The engine's session-level flat calls (wit/engine.wit: `session.register`, `acquire-flat`,
// `release-flat`, `extend-flat`, `feed-flat`, …): an uncontended acquire and its release in four component
// calls with only numbers and bytes crossing — the lock name registered once (a u32 name
// id), the operation addressed by a slot number the engine frees itself with the outcome
// (nothing to dispose). Bookkeeping only: every decision is the engine's.
//
// A `Slot` answers the calls src/driver.js makes on an operation (`feed`, `lose`, `lend`, `tick`,
// `cancel`, `pollOutcome`), so the driver runs either alike. The hot calls (the three
// constructors, `feed-flat`, and `register`, once per name) go through the lean wrappers
// scripts/build.js appends to the generated bindings, where it could.
import { leanAcquireFlat, leanReleaseFlat, leanExtendFlat, leanFeedFlat, leanRegister } from '../generated/engine.js';

const ascii = new TextEncoder();
// A lease's token as bytes, written here instead of a new array per release or extend (the
// engine copies it in); a token that does not fit whole is encoded on its own.
const tokenBytes = new Uint8Array(256);
const encoded = (token) => {
  const { read, written } = ascii.encodeInto(token, tokenBytes);
  return read === token.length ? tokenBytes.subarray(0, written) : ascii.encode(token);
};

/** One session's name ids and the constructors of its slotted operations. */
export class Slots {
  #ids = new Map();
  #lastName = undefined; #lastId = 0;
  constructor(session) {
    this.session = session;
    this.acquireFlat = leanAcquireFlat ? (id, wait, now, entropy, lent) => leanAcquireFlat(session, id, wait, now, entropy, lent)
      : (id, wait, now, entropy, lent) => session.acquireFlat(id, wait, now, entropy, lent);
    this.releaseFlat = leanReleaseFlat ? (id, token, now, entropy, lent) => leanReleaseFlat(session, id, token, now, entropy, lent)
      : (id, token, now, entropy, lent) => session.releaseFlat(id, token, now, entropy, lent);
    this.extendFlat = leanExtendFlat ? (id, token, ttl, now, entropy, lent) => leanExtendFlat(session, id, token, ttl, now, entropy, lent)
      : (id, token, ttl, now, entropy, lent) => session.extendFlat(id, token, ttl, now, entropy, lent);
    this.register = leanRegister ? (name) => leanRegister(session, name) : (name) => session.register(name);
    this.feedFlat = leanFeedFlat ? (slot, now, node, bytes) => leanFeedFlat(session, slot, now, node, bytes)
      : (slot, now, node, bytes) => session.feedFlat(slot, now, node, bytes);
  }

  /**
   * The id of lock `name`, registered on first use; a full table is emptied once and tried
   * again. The last name looked up is kept beside the table: a lease's release (and most
   * extends) asks for the name its acquire just did, and comparing the same string costs
   * nothing where the table hashes it again (a name built per call is a new string each time).
   *
   * A refusal empties the table only when the table is full: the engine checks the name
   * first, and says a full table with an `invalid` error of kind `other`, which no name's
   * own refusal has (wit/engine.wit, `register`); a refused name leaves the names registered.
   */
  nameId(name) {
    if (name === this.#lastName) return this.#lastId;
    let id = this.#ids.get(name);
    if (id === undefined) {
      try {
        id = this.register(name);
      } catch (error) {
        if (error?.tag !== 'invalid' || error.val?.kind !== 'other') throw error; // the name itself is refused
        this.session.forgetNames(); this.#ids.clear(); this.#lastName = undefined; // operations in flight keep their lock
        id = this.register(name);
      }
      this.#ids.set(name, id);
    }
    this.#lastName = name; this.#lastId = id;
    return id;
  }

  /** `acquire-flat`: `[slot, first step]`; `lent[node]` 1 where a connection owing nothing is lent. */
  acquire(name, wait, now, entropy, lent) {
    return this.#started(this.acquireFlat(this.nameId(name), wait, now, entropy, bits(lent)));
  }

  /** `release-flat`, as `acquire`. */
  release(name, token, now, entropy, lent) {
    return this.#started(this.releaseFlat(this.nameId(name), encoded(token), now, entropy, bits(lent)));
  }

  /** `extend-flat` (the lease held by `token` to `ttl` ms from now), as `acquire`. */
  extend(name, token, ttl, now, entropy, lent) {
    return this.#started(this.extendFlat(this.nameId(name), encoded(token), ttl, now, entropy, bits(lent)));
  }

  #started(first) {
    return [new Slot(this, (first[1] | first[2] << 8 | first[3] << 16 | first[4] << 24) >>> 0), first]; // the u32 slot after the version byte
  }
}

/** One operation in a session slot: the calls src/driver.js makes on an operation, by slot number. */
export class Slot {
  constructor(slots, slot) { this.slots = slots; this.slot = slot; }
  feed(now, node, bytes) { return this.slots.feedFlat(this.slot, now, node, bytes); }
  lose(now, node) { return this.slots.session.loseFlat(this.slot, now, node); }
  lend(now, node) { return this.slots.session.lendFlat(this.slot, now, node); }
  tick(now) { return this.slots.session.tickFlat(this.slot, now); }
  cancel(now) { this.slots.session.cancelFlat(this.slot, now); }
  /** The outcome the slotted layout does not carry (an error), once; the engine frees the slot. */
  pollOutcome() { return this.slots.session.outcomeFlat(this.slot); }
}

function bits(lent) {
  let mask = 0;
  for (let node = 0; node < lent.length; node++) if (lent[node]) mask |= 1 << node;
  return mask >>> 0;
}
