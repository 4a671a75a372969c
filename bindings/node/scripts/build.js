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
  if (name === 'engine.js') text += leanFeed(text);
  await writeFile(path, text ?? content);
}
console.log(`distlock: transpiled ${wasm} into ${out}`);

// `operation.feed` is called once per reply, and jco's wrapper spends most of a call on
// bookkeeping for component-model async tasks (a task object, two closures, its exit) that a
// component with no imports never needs: ~3.7 us a call where the same canonical-ABI call
// made directly costs ~1.4 us. This appends `leanFeed(op, now, node, bytes)`: the same call
// (the trap check, the borrow check, the bytes lowered with `cabi_realloc`, the step copied
// out, the post-return), found by name in jco's own output. Where this jco's output does not
// have the pieces, it exports `leanFeed = null` and src/flat.js calls jco's `op.feed`.
function leanFeed(text) {
  const escape = (literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const feed = escape('distlock:lock/machines@0.1.0#[method]operation.feed');
  const call = text.match(new RegExp(`(\\w+) = exports\\d+\\['${feed}'\\];`))?.[1];
  const postReturn = text.match(new RegExp(`(\\w+) = exports\\d+\\['cabi_post_${feed}'\\];`))?.[1];
  const start = text.indexOf('Operation.prototype.feed = function');
  const wrapper = start < 0 ? '' : text.slice(start, text.indexOf('\n};', start));
  const table = wrapper.match(/(handleTable\d+)\[\(handle1 << 1\) \+ 1\] & T_FLAG/)?.[1];
  const realloc = wrapper.match(/(realloc\d+)\(0, 0, 1, /)?.[1];
  const memory = wrapper.match(/new Uint8Array\((memory\d+)\.buffer, ptr/)?.[1];
  const needed = [call, postReturn, table, realloc, memory, 'symbolRscHandle', 'T_FLAG', 'toUint8', 'getOrCreateAsyncState'];
  if (needed.some((name) => !name || !new RegExp(`\\b${name}\\b`).test(text)) || !wrapper.includes(`${postReturn}(ret)`) || !wrapper.includes('getOrCreateAsyncState(0)')) {
    console.log("distlock: this jco's output lacks what the lean feed needs; the driver calls jco's operation.feed");
    return '\nexport const leanFeed = null;\n';
  }
  return `
// Appended by scripts/build.js: operation.feed without the per-call async-task bookkeeping.
export function leanFeed(op, now, node, bytes) {
  const state = getOrCreateAsyncState(0);
  state.throwIfTrapped();
  const handle = op[symbolRscHandle];
  if (!handle || (${table}[(handle << 1) + 1] & T_FLAG) === 0) throw new TypeError('Resource error: Not a valid "Operation" resource.');
  const length = bytes.byteLength, ptr = ${realloc}(0, 0, 1, length);
  new Uint8Array(${memory}.buffer, ptr, length).set(bytes);
  let ret;
  try {
    ret = ${call}(${table}[(handle << 1) + 1] & ~T_FLAG, +now, toUint8(node), ptr, length);
  } catch (err) {
    state.markTrapped(err);
    throw err;
  }
  const view = new DataView(${memory}.buffer), at = view.getUint32(ret, true);
  const step = new Uint8Array(${memory}.buffer.slice(at, at + view.getUint32(ret + 4, true)));
  state.mayLeave = false;
  ${postReturn}(ret);
  state.mayLeave = true;
  return step;
}
`;
}
