// Builds the douyin-js component: `node build.mjs OUT.wasm` (or `npm run build`, which writes
// douyin-js.wasm here). tests/build.rs runs the same script, so this file is the one place that
// names the contract version the adapter is built against.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

/** The WIT folder and world of the contract (also named by the imports in src/adapter.js). */
export const WIT = '../../wit/adapter@0.2.0';
export const WORLD = 'plugin';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

const out = process.argv[2] ?? 'douyin-js.wasm';
const { component } = await componentize({
  sourcePath: here('src/adapter.js'),
  witPath: here(WIT),
  worldName: WORLD,
  // Without these the engine imports WASI interfaces for stdio, randomness, clocks and fetch;
  // `http` especially, since the host links no wasi:http. The adapter reaches the network only
  // through the contract's signed-http.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
