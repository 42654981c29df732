/**
 * The module boundaries of DESIGN.md ("Shape"), checked on the source: imports
 * flow one way (cli → agent → {api, postgres, ha, transport, storage, state,
 * raft, config}), there is no import circle, the pure folders do no I/O and
 * read no clock, and no file in lib/ grows past 800 lines.
 */

import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const LIB = resolve(dirname(new URL(import.meta.url).pathname), "../../lib");

/** Every .ts file under lib/, relative to lib/. */
async function libFiles(dir = LIB): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...await libFiles(path));
    else if (entry.name.endsWith(".ts")) files.push(relative(LIB, path));
  }
  return files.sort();
}

/** The lib/ files a file imports (relative imports only; npm: and node: are left out). */
function importsOf(file: string, text: string): string[] {
  const found: string[] = [];
  const pattern = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"/g;
  for (const match of text.matchAll(pattern)) {
    const target = relative(LIB, resolve(LIB, dirname(file), match[1]!));
    if (!target.startsWith("..")) found.push(target);
  }
  return found;
}

/** The folder of a lib/ file ("raft", "agent", …; "" for lib/*.ts). */
function folder(file: string): string {
  return file.includes("/") ? file.slice(0, file.indexOf("/")) : "";
}

const graph = new Map<string, string[]>();
const sources = new Map<string, string>();
for (const file of await libFiles()) {
  const text = await Deno.readTextFile(join(LIB, file));
  sources.set(file, text);
  graph.set(file, importsOf(file, text));
}

/** Folders each folder may import (besides itself and the lib/*.ts helpers). */
const ALLOWED: Record<string, readonly string[]> = {
  raft: [],
  state: ["raft"],
  ha: ["raft", "state"],
  config: [],
  storage: ["raft", "state"],
  transport: ["raft"],
  api: ["raft", "state", "transport", "config"],
  postgres: ["config", "raft", "state"],
  agent: ["api", "postgres", "ha", "transport", "storage", "state", "raft", "config"],
  cli: ["agent", "api", "postgres", "ha", "transport", "storage", "state", "raft", "config"],
};

Deno.test("imports flow one way between lib/ folders as DESIGN.md draws them", () => {
  const wrong: string[] = [];
  for (const [file, imports] of graph) {
    const from = folder(file);
    if (from === "") continue;
    const allowed = ALLOWED[from];
    assert.ok(allowed, `lib/${from}/ is not a folder DESIGN.md knows`);
    for (const target of imports) {
      const to = folder(target);
      if (to === from || to === "") continue;
      if (!allowed.includes(to)) wrong.push(`lib/${file} imports lib/${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("no import circle anywhere in lib/", () => {
  const state = new Map<string, "visiting" | "done">();
  const circles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "visiting") {
      circles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "visiting");
    for (const target of graph.get(file) ?? []) visit(target, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(circles, []);
});

Deno.test("the pure folders (raft, state, ha) do no I/O and read no clock or randomness", () => {
  const forbidden =
    /\bDeno\.|\bfetch\(|\bsetTimeout\(|\bsetInterval\(|\bDate\.now\(|\bnew Date\(|\bperformance\.now\(|\bMath\.random\(|\bcrypto\./;
  const offenders: string[] = [];
  for (const [file, text] of sources) {
    if (!["raft", "state", "ha"].includes(folder(file))) continue;
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    const match = forbidden.exec(code);
    if (match) offenders.push(`lib/${file}: ${match[0]}`);
  }
  assert.deepEqual(offenders, []);
});

Deno.test("no file in lib/ is over 800 lines", () => {
  const long: string[] = [];
  for (const [file, text] of sources) {
    const lines = text.split("\n").length;
    if (lines > 800) long.push(`lib/${file}: ${lines} lines`);
  }
  assert.deepEqual(long, []);
});
