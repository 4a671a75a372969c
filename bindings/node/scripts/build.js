// Transpiles the engine component (wasm/engine, built by `cargo build` into
// <target>/wasm/wasm32-wasip2/release/distlock_engine.wasm) into an ES module with jco, into
// generated/. Run by `npm ci` (prepare) and `npm run build`; CARGO_TARGET_DIR moves <target>.
import { readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transpileBytes } from '@bytecodealliance/jco-transpile';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
const wasm = join(target, 'wasm', 'wasm32-wasip2', 'release', 'distlock_engine.wasm');
const out = join(here, '..', 'generated');
// The calls `lean` (below) appends, by their jco wrapper, export and argument types.
const LEAN = [
  { name: 'leanFeed', wrapper: 'Operation.prototype.feed', method: 'feed', export: '[method]operation.feed', args: ['f64', 'u8', 'bytes'], answer: 'list' },
  { name: 'leanFeedFlat', wrapper: 'Session.prototype.feedFlat', method: 'feedFlat', export: '[method]session.feed-flat', args: ['u32', 'f64', 'u8', 'bytes'], answer: 'list' },
  { name: 'leanAcquireFlat', wrapper: 'Session.prototype.acquireFlat', method: 'acquireFlat', export: '[method]session.acquire-flat', args: ['u32', 'u32', 'f64', 'bytes', 'u32'], answer: 'result' },
  { name: 'leanReleaseFlat', wrapper: 'Session.prototype.releaseFlat', method: 'releaseFlat', export: '[method]session.release-flat', args: ['u32', 'bytes', 'f64', 'bytes', 'u32'], answer: 'result' },
  { name: 'leanExtendFlat', wrapper: 'Session.prototype.extendFlat', method: 'extendFlat', export: '[method]session.extend-flat', args: ['u32', 'bytes', 'u32', 'f64', 'bytes', 'u32'], answer: 'result' },
  { name: 'leanRegister', wrapper: 'Session.prototype.register', method: 'register', export: '[method]session.register', args: ['string'], answer: 'result-u32' },
];
// What the lean calls share, found once instead of per call: views of the engine's memory,
// made again only for a grown memory (which detaches its old buffer, and a view of a detached
// buffer has length 0: the cue to look again), and the component's async state and its
// may-leave instance flag (jco's \`getOrCreateAsyncState(0)\` and \`mayLeave\` setter look them
// up in a Map on every call), which the lean calls set as that setter does.
const LEAN_PRELUDE = `
const LEAN_UTF8 = new TextEncoder();
let LEAN_BYTES = new Uint8Array(0), LEAN_VIEW = new DataView(LEAN_BYTES.buffer), LEAN_STATE = null, LEAN_FLAGS;
function leanMemory(memory) {
  if (LEAN_BYTES.length === 0) { LEAN_BYTES = new Uint8Array(memory.buffer); LEAN_VIEW = new DataView(LEAN_BYTES.buffer); }
}
function leanState() {
  if (LEAN_STATE === null) { LEAN_STATE = getOrCreateAsyncState(0); LEAN_FLAGS = INSTANCE_FLAGS.get(0); }
  LEAN_STATE.throwIfTrapped();
  return LEAN_STATE;
}
function leanMayLeave(state, value) {
  if (LEAN_FLAGS === undefined) state.mayLeave = value; else LEAN_FLAGS.value = value ? 1 : 0;
}
`;

let bytes;
try {
  bytes = await readFile(wasm);
} catch {
  console.error(`distlock: ${wasm} is missing: run \`cargo build\` in ${root} first`);
  process.exit(1);
}
const { files, imports } = await transpileBytes(bytes, {
  name: 'engine',
  // The engine imports nothing, so instantiation is synchronous and needs no WASI shim.
  instantiation: undefined,
  noComponentErrorWrapping: true,
  nodejsCompat: true,
  tlaCompat: false,
});
if (imports.length > 0) {
  console.error(`distlock: the engine component has imports (${imports.join(', ')}); it must have none`);
  process.exit(1);
}
// jco's bindings check `process.env.JCO_DEBUG` in every one of the dozens of debug-log calls
// each component call makes, and reading `process.env` goes into C++ every time: about 5 us
// of every engine call. Decide it once, at load, instead (the same behaviour: set JCO_DEBUG
// before loading to see the logs). A jco whose logger reads differently is left as it is.
const PER_CALL_LOGGER = `const _debugLog = (...args) => {
  if (!globalThis?.process?.env?.JCO_DEBUG) { return; }
  console.debug(...args);
};`;
const LOAD_TIME_LOGGER = 'const _debugLog = globalThis?.process?.env?.JCO_DEBUG ? (...args) => console.debug(...args) : () => {};';
const decoder = new TextDecoder();
await rm(out, { recursive: true, force: true });
for (const [name, content] of Object.entries(files)) {
  const path = join(out, name);
  await mkdir(dirname(path), { recursive: true });
  let text = name.endsWith('.js') ? decoder.decode(content) : null;
  if (text?.includes(PER_CALL_LOGGER)) text = text.replace(PER_CALL_LOGGER, LOAD_TIME_LOGGER);
  if (name === 'engine.js') text += LEAN_PRELUDE + LEAN.map((call) => lean(text, call)).join('');
  await writeFile(path, text ?? content);
}
console.log(`distlock: transpiled ${wasm} into ${out}`);

// The calls made once per operation or per reply — `operation.feed`, and the session-level
// `acquire-flat`, `release-flat`, `extend-flat`, `feed-flat` (src/slots.js), and `register`,
// once per name and session (many names, many clients) — spend most of a jco call on
// bookkeeping for component-model async tasks (a task object, two closures, its exit) that a
// component with no imports never needs: ~3.7 us a call where the same canonical-ABI call
// made directly costs ~1.4 us. `lean` appends each as `leanX(self, ...args)`: the same call
// (the trap check, the borrow check, numbers converted as jco does, bytes and strings lowered
// with `cabi_realloc` at their exact length, the post-return), its pieces found by name in
// jco's own output. A byte-list answer is copied out before the post-return into a Node
// `Buffer` from Node's shared pool (one copy, no `ArrayBuffer` of its own per call as jco's
// `memory.buffer.slice` makes: fewer allocations and less for the GC to sweep). Where this
// jco's output does not have the pieces, it exports `leanX = null` and the caller uses jco's
// method. An error answer (`result<…, error>`) is refused input, which changes nothing in the
// engine (wit/engine.wit): the lean call then makes jco's own call again, which lifts the
// error and throws it as jco does.

function lean(text, { name, wrapper: wrapperName, method, export: exportName, args, answer }) {
  const escape = (literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const exported = escape(`distlock:lock/machines@0.1.0#${exportName}`);
  const call = text.match(new RegExp(`(\\w+) = exports\\d+\\['${exported}'\\];`))?.[1];
  const start = text.indexOf(`${wrapperName} = function`);
  const wrapper = start < 0 ? '' : text.slice(start, text.indexOf('\n};', start));
  // By the wrapper's own call: jco shares one post-return among exports whose core functions are alike.
  const postReturn = wrapper.match(/(postReturn\d+)\(ret\)/)?.[1];
  const table = wrapper.match(/(handleTable\d+)\[\(handle1 << 1\) \+ 1\] & T_FLAG/)?.[1];
  const [, realloc, memory] = wrapper.match(/_utf8AllocateAndEncode\(arg\d+, (realloc\d+), (memory\d+)\)/)
    ?? [, wrapper.match(/(realloc\d+)\(0, 0, 1, /)?.[1], wrapper.match(/new Uint8Array\((memory\d+)\.buffer, ptr/)?.[1]];
  const needed = [call, postReturn, table, realloc, memory, 'symbolRscHandle', 'T_FLAG', 'toUint8', 'toUint32', 'getOrCreateAsyncState', 'INSTANCE_FLAGS'];
  if (needed.some((piece) => !piece || !new RegExp(`\\b${piece}\\b`).test(text)) || !wrapper.includes(`${postReturn}(ret)`) || !wrapper.includes('getOrCreateAsyncState(0)')) {
    console.log(`distlock: this jco's output lacks what the lean ${exportName} needs; the driver calls jco's`);
    return `\nexport const ${name} = null;\n`;
  }
  const params = args.map((_, i) => `a${i}`);
  const lowered = [], lowering = [];
  args.forEach((kind, i) => {
    if (kind === 'f64') lowered.push(`+a${i}`);
    else if (kind === 'u8') lowered.push(`toUint8(a${i})`);
    else if (kind === 'u32') lowered.push(`toUint32(a${i})`);
    else if (kind === 'string') { // UTF-8 at its exact length: the guest owns the allocation as a string of that capacity
      lowering.push(`if (typeof a${i} !== 'string') throw new TypeError('expected a string, received [' + typeof a${i} + ']');`,
        `const len${i} = Buffer.byteLength(a${i}), ptr${i} = len${i} === 0 ? 1 : ${realloc}(0, 0, 1, len${i});`,
        `leanMemory(${memory});`, `if (len${i} > 0) LEAN_UTF8.encodeInto(a${i}, LEAN_BYTES.subarray(ptr${i}, ptr${i} + len${i}));`);
      lowered.push(`ptr${i}`, `len${i}`);
    } else {
      lowering.push(`const len${i} = a${i}.byteLength, ptr${i} = ${realloc}(0, 0, 1, len${i});`, `leanMemory(${memory});`, `LEAN_BYTES.set(a${i}, ptr${i});`);
      lowered.push(`ptr${i}`, `len${i}`);
    }
  });
  const refused = answer === 'list' ? '' : `if (view.getUint8(ret) !== 0) {
    leanMayLeave(state, false);
    ${postReturn}(ret);
    leanMayLeave(state, true);
    return self.${method}(${params.join(', ')});
  }
  `;
  const list = answer === 'list' ? 'ret' : 'ret + 4';
  const out = answer === 'result-u32' ? `const out = view.getUint32(ret + 4, true);`
    : `const at = view.getUint32(${list}, true), out = Buffer.allocUnsafe(view.getUint32(${list} + 4, true));
  out.set(LEAN_BYTES.subarray(at, at + out.length));`;
  return `
// Appended by scripts/build.js: ${exportName} without the per-call async-task bookkeeping.
export function ${name}(self, ${params.join(', ')}) {
  const state = leanState();
  const handle = self[symbolRscHandle];
  if (!handle || (${table}[(handle << 1) + 1] & T_FLAG) === 0) throw new TypeError('Resource error: Not a valid "${wrapperName.split('.')[0]}" resource.');
  ${lowering.join('\n  ')}
  let ret;
  try {
    ret = ${call}(${table}[(handle << 1) + 1] & ~T_FLAG, ${lowered.join(', ')});
  } catch (err) {
    state.markTrapped(err);
    throw err;
  }
  leanMemory(${memory});
  const view = LEAN_VIEW;
  ${refused}${out}
  leanMayLeave(state, false);
  ${postReturn}(ret);
  leanMayLeave(state, true);
  return out;
}
`;
}
