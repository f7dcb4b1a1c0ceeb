// sharp as a peer in `pipeline bench` (driven by tools/pipeline_cli/perf/peers.py; pyvips_peer.py
// speaks the same protocol for pyvips).
//
// One long-lived process, so sharp is warm like the Python engines measured beside it. It reads
// one JSON request per line on stdin and answers one JSON line on stdout:
//   {"op": "version"}                                   -> {"sharp": "0.35.5", "vips": "8.18.7"}
//   {"op": "load", "data": "<base64>"}                  -> {"ok": true}     (the input, kept)
//   {"op": "run", "way": "per-size" | "cascade", "sizes": [1024, 512, 128],
//    "format": "jpeg" | "webp", "quality": 82}         -> {"ms": 53.1, "outputs": ["<base64>", ...]}
// "ms" is the run timed in here, so the pipe and base64 are not counted as the engine's time.
// usage: node sharp_peer.mjs <directory holding node_modules/sharp>
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const require = createRequire(path.join(path.resolve(process.argv[2]), "package.json"));
const sharp = require("sharp");

// One thread and no operation cache: the same conditions as every other engine in the bench.
sharp.concurrency(1);
sharp.cache(false);

let input = null;

function encoded(pipeline, format, quality) {
  // JPEG has no alpha: flatten on white, as the thumbnailer does (a no-op without alpha).
  return format === "jpeg"
    ? pipeline.flatten({ background: "#ffffff" }).jpeg({ quality })
    : pipeline.webp({ quality, effort: 4 });
}

function fit(pipeline, size) {
  return pipeline.resize({ width: size, height: size, fit: "inside", withoutEnlargement: true });
}

// The way image handlers do it: one decode-resize-encode pipeline per size (shrink-on-load each time).
async function perSize(sizes, format, quality) {
  const outputs = [];
  for (const size of sizes) {
    outputs.push(await encoded(fit(sharp(input).autoOrient(), size), format, quality).toBuffer());
  }
  return outputs;
}

// Decode once to the largest size, then resize that result for each smaller size.
async function cascade(sizes, format, quality) {
  const [largest, ...smaller] = sizes;
  const { data, info } = await fit(sharp(input).autoOrient(), largest)
    .raw()
    .toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  const outputs = [await encoded(sharp(data, raw), format, quality).toBuffer()];
  for (const size of smaller) {
    outputs.push(await encoded(fit(sharp(data, raw), size), format, quality).toBuffer());
  }
  return outputs;
}

async function answer(request) {
  if (request.op === "version") {
    return { sharp: sharp.versions.sharp, vips: sharp.versions.vips };
  }
  if (request.op === "load") {
    input = Buffer.from(request.data, "base64");
    return { ok: true };
  }
  if (request.op === "run") {
    const run = request.way === "cascade" ? cascade : perSize;
    const started = performance.now();
    const outputs = await run(request.sizes, request.format, request.quality);
    const ms = performance.now() - started;
    return { ms, outputs: outputs.map((buffer) => buffer.toString("base64")) };
  }
  throw new Error(`unknown op ${request.op}`);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    reply = await answer(JSON.parse(line));
  } catch (error) {
    reply = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
