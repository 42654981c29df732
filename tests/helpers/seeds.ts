/**
 * The SQL statements of the user's documents (tests/testdata/seeds, copies of
 * shared/seeds), extracted verbatim: `SELECT … ;` blocks (with their leading
 * `--` comments dropped) and the `psql -c "…"` lines of the drill checklist.
 *
 * @module
 */

/** One statement and where it came from. */
export interface SeedStatement {
  file: string;
  /** 1-based line where the statement starts */
  line: number;
  sql: string;
  /** the heading above it in the document */
  section: string;
}

/** Extract every statement of one document. */
export function extractStatements(file: string, text: string): SeedStatement[] {
  const lines = text.split("\n");
  const out: SeedStatement[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const psql = /^psql -c "(.*)"\s*$/.exec(line.trim());
    if (psql) {
      out.push({ file, line: i + 1, sql: psql[1]!, section });
      continue;
    }
    if (/^SELECT\b/i.test(line.trim())) {
      const start = i;
      const parts = [line];
      while (!parts[parts.length - 1]!.trimEnd().endsWith(";") && i + 1 < lines.length) {
        parts.push(lines[++i]!);
      }
      out.push({ file, line: start + 1, sql: parts.join("\n"), section });
      continue;
    }
    if (line.trim() && !line.startsWith("--") && !line.startsWith("#") && !/^\s/.test(line)) {
      section = line.trim();
    }
  }
  return out;
}

/** Every statement of both documents, in document order. */
export async function seedStatements(): Promise<SeedStatement[]> {
  const dir = new URL("../testdata/seeds/", import.meta.url);
  const files = ["cluster-management.txt", "raft-protocol.txt"];
  const all: SeedStatement[] = [];
  for (const f of files) {
    all.push(...extractStatements(f, await Deno.readTextFile(new URL(f, dir))));
  }
  return all;
}
