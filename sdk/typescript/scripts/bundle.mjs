// The browser build: one minified ES module, dist/roomcast.min.js, with no
// dependency (esbuild bundles src/index.ts into it).

import { build } from "esbuild";

await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  outfile: "dist/roomcast.min.js",
  legalComments: "none",
});
