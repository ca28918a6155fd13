// Bundles each widget front-end (js/NAME.js) into src/picsift/static/NAME.js, and copies the CSS.
import { build, context } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const entries = ["prompt", "score_range", "gallery", "sampler", "explorer", "collections", "filters", "actions", "health"];
const outdir = "src/picsift/static";
const options = {
  entryPoints: entries.map((name) => `js/${name}.js`),
  outdir,
  bundle: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  logLevel: "info",
};
mkdirSync(outdir, { recursive: true });
copyFileSync("js/style.css", `${outdir}/style.css`);
if (process.argv.includes("--watch")) await (await context(options)).watch();
else await build(options);
