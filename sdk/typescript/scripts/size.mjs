// Prints the size of the minified, gzipped browser build; exits 1 above the
// budget (8 KB = 8192 bytes, issue #15).

import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET = 8192;
const file = "dist/roomcast.min.js";
const raw = readFileSync(file);
const gzipped = gzipSync(raw, { level: 9 }).length;
console.log(`${file}: ${raw.length} bytes minified, ${gzipped} bytes gzipped (budget ${BUDGET})`);
if (gzipped > BUDGET) {
  console.error(`over budget by ${gzipped - BUDGET} bytes`);
  process.exit(1);
}
