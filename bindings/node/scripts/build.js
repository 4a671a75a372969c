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
  const text = name.endsWith('.js') ? decoder.decode(content) : null;
  await writeFile(path, text?.includes(PER_CALL_LOGGER) ? text.replace(PER_CALL_LOGGER, LOAD_TIME_LOGGER) : content);
}
console.log(`distlock: transpiled ${wasm} into ${out}`);
