// Bundle the viewer (viewer.js and the npm packages it imports) into ../static/medcne-viewer.js
// with esbuild, and put the licence notices of every npm package inside the bundle at its top,
// as one preserved comment: medcne copies this one file into every viewer folder it writes, so
// the notices travel with the code they cover (`npm run build`; `make viewer-assets` runs it).
//
// Which packages are inside: those whose files esbuild put bytes of into the output (its
// metafile), and, transitively, their production dependencies: a package's published file may
// already hold its dependencies' code (regl-scatterplot's holds gl-matrix, earcut, regl-line, ...),
// which no metafile shows. A listed package that holds nothing costs a few lines; a missing one
// would drop a notice its licence asks to keep.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const esbuild = require("esbuild");

const HERE = __dirname;
const OUT = path.join(HERE, "..", "static", "medcne-viewer.js");
const LICENCE_FILE = /^(licen[cs]e|copying)(\.(md|txt|markdown))?$/i;
const NOTICE_LINE = /copyright|@license|\(c\) \d{4}/i;

// The folder of the package a file in node_modules belongs to (scoped names included), or null.
function packageDir(file) {
  const parts = path.relative(HERE, path.resolve(HERE, file)).split(path.sep);
  const at = parts.lastIndexOf("node_modules");
  if (at < 0) return null;
  const len = parts[at + 1] && parts[at + 1].startsWith("@") ? 2 : 1;
  return path.join(HERE, ...parts.slice(0, at + 1 + len));
}

// Where Node would find package `name` from the package in `dir`: dir/node_modules, then upwards.
function resolveDependency(name, dir) {
  for (let d = dir; d.startsWith(HERE); d = path.dirname(d)) {
    const candidate = path.join(d, "node_modules", name);
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (d === HERE) break;
  }
  throw new Error(`${name}, a dependency of ${path.relative(HERE, dir)}, is not installed; run npm ci`);
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

// Comment lines of a bundled file that carry a notice (e.g. code a package took from elsewhere).
function noticeLines(file) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  return lines
    .map((l) => l.trim())
    .filter((l) => /^(\/\/|\/\*|\*)/.test(l) && NOTICE_LINE.test(l))
    .map((l) => l.replace(/^(\/\/+|\/\*+!?|\*+)\s*/, "").replace(/\s*\*\/$/, ""));
}

function packagesInside(metafile) {
  const output = Object.values(metafile.outputs)[0];
  const found = new Map(); // package folder -> notice lines from its bundled files
  for (const [file, info] of Object.entries(output.inputs)) {
    const dir = packageDir(file);
    if (!dir || info.bytesInOutput === 0) continue;
    if (!found.has(dir)) found.set(dir, []);
    found.get(dir).push(...noticeLines(path.resolve(HERE, file)));
  }
  const queue = [...found.keys()];
  while (queue.length) {
    const dir = queue.shift();
    for (const dep of Object.keys(readJson(path.join(dir, "package.json")).dependencies || {})) {
      const depDir = resolveDependency(dep, dir);
      if (!found.has(depDir)) {
        found.set(depDir, []);
        queue.push(depDir);
      }
    }
  }
  return found;
}

function author(pkg) {
  const a = pkg.author;
  return typeof a === "string" ? a : a && a.name ? a.name : "";
}

function noticeOf(dir, extraLines) {
  const pkg = readJson(path.join(dir, "package.json"));
  const licenceFile = fs.readdirSync(dir).sort().find((f) => LICENCE_FILE.test(f));
  if (!licenceFile) {
    throw new Error(`${pkg.name} ${pkg.version} has no LICENSE file to copy into the bundle`);
  }
  const text = fs.readFileSync(path.join(dir, licenceFile), "utf8").trim();
  const by = author(pkg);
  const head = `${pkg.name} ${pkg.version} (${pkg.license || "see below"})${by ? `, by ${by}` : ""}`;
  const extra = [...new Set(extraLines)].filter((l) => !text.includes(l));
  const parts = [`---- ${head} ----`, text];
  if (extra.length) parts.push(`Notices in its files:\n${extra.join("\n")}`);
  return { name: pkg.name, version: pkg.version, text: parts.join("\n\n") };
}

// sha256 over the sources the bundle is built from (every .js here, package.json, package-lock.json),
// each as its name, NUL, its bytes, NUL, by name: medcne/viewer/bundlestamp.py computes the same, so
// that a wheel (setup.py) or `medcne view` in a checkout refuses a bundle older than its sources.
function sourcesDigest() {
  const names = fs
    .readdirSync(HERE)
    .filter((f) => fs.statSync(path.join(HERE, f)).isFile() && (f.endsWith(".js") || ["package.json", "package-lock.json"].includes(f)))
    .sort();
  const digest = crypto.createHash("sha256");
  for (const name of names) {
    digest.update(`${name}\0`);
    digest.update(fs.readFileSync(path.join(HERE, name)));
    digest.update("\0");
  }
  return digest.digest("hex");
}

function header(found) {
  const notices = [...found]
    .map(([dir, lines]) => noticeOf(dir, lines))
    .sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  const body = [
    "medcne-viewer.js: the medcne map viewer (MIT licence, see medcne's LICENSE file),",
    "bundled by esbuild with the npm packages below. Their licence notices follow.",
    `Sources: sha256 ${sourcesDigest()} (of src/medcne/viewer/js, as medcne/viewer/bundlestamp.py computes it)`,
    "",
    `Packages: ${notices.map((n) => `${n.name} ${n.version}`).join(", ")}`,
    "",
    notices.map((n) => n.text).join("\n\n"),
  ].join("\n");
  const lines = body.replace(/\*\//g, "* /").split("\n");
  return `/*!\n${lines.map((l) => (l ? ` * ${l}` : " *")).join("\n")}\n */\n`;
}

async function main() {
  const result = await esbuild.build({
    absWorkingDir: HERE,
    entryPoints: ["viewer.js"],
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2020",
    outfile: OUT,
    metafile: true,
    write: false,
    logLevel: "warning",
  });
  const code = result.outputFiles.find((f) => f.path === OUT).text;
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const tmp = `${OUT}.tmp`;
  fs.writeFileSync(tmp, header(packagesInside(result.metafile)) + code);
  fs.renameSync(tmp, OUT); // a reader never sees half a bundle
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
