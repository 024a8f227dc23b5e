// Builds the component: `node build.mjs OUT.wasm` (or `npm run build`, which writes adapter.wasm
// here). This file and the import specifiers in src/adapter.js are the places that name the
// contract version the adapter is built against.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

/**
 * The contract: wit/ is a copy of coupon-host's `wit/adapter@0.2.0`, and `plugin` its world. The
 * component exports `coupon:adapter/adapter@0.2.0`, which tells the host what it speaks.
 */
export const WIT = 'wit';
export const WORLD = 'plugin';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

const out = process.argv[2] ?? 'adapter.wasm';
const { component } = await componentize({
  sourcePath: here('src/adapter.js'),
  witPath: here(WIT),
  worldName: WORLD,
  // Keep these: without them the component imports WASI stdio, random, clocks and wasi:http,
  // which the host does not link. Every request goes through the contract's signed-http.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
