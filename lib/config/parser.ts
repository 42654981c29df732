/**
 * The line syntax of postgresql.conf, after PostgreSQL's `guc-file.l`:
 * `name = value` or `name value`, `#` comments outside quotes, single-quoted
 * values with `''` and backslash escapes, unquoted values as one token.
 * This module only turns text into assignments; includes and meanings are the
 * loader's.
 *
 * @module
 */

/** One `name = value` line of a configuration file. */
export interface ConfigLine {
  /** lower-cased name, e.g. `pgraft.node_id` or `include` */
  name: string;
  /** the value with quotes and escapes resolved */
  value: string;
  /** 1-based line number */
  line: number;
  /** whether the value was written in single quotes */
  quoted: boolean;
}

/** A line that is not valid syntax. `line` is 1-based; the message has no file prefix. */
export class ConfigSyntaxError extends SyntaxError {
  override name = "ConfigSyntaxError";
  /** 1-based line number */
  readonly line: number;

  /** Create the error for `line`. */
  constructor(line: number, message: string) {
    super(message);
    this.line = line;
  }
}

/** Longest line accepted, a limit against pathological files. */
export const LINE_LENGTH_MAX = 1_000_000;

const NAME =
  /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*(?:\.[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)*/;
// Unquoted values: identifiers, numbers, numbers with units, paths, addresses.
const UNQUOTED = /^[A-Za-z0-9_\u0080-\uffff+\-.:/]+/;

/**
 * Parse the text of one configuration file into its assignments, in order.
 *
 * @param text the whole file
 * @returns every assignment, including `include*` directives
 * @throws {ConfigSyntaxError} at the first line that is not valid syntax
 * @example
 * ```ts
 * const [line] = parseConfigText("Pgraft.Port = 7001 # peers\n");
 * if (line?.name !== "pgraft.port" || line.value !== "7001") throw new Error();
 * ```
 */
export function parseConfigText(text: string): ConfigLine[] {
  const result: ConfigLine[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const parsed = parseLine(lines[index]!, index + 1);
    if (parsed) result.push(parsed);
  }
  return result;
}

function isSpace(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\r" || c === "\f" || c === "\v";
}

function parseLine(source: string, line: number): ConfigLine | null {
  if (source.length > LINE_LENGTH_MAX) {
    throw new ConfigSyntaxError(line, `line is longer than ${LINE_LENGTH_MAX} characters`);
  }
  let pos = 0;
  const skipSpace = () => {
    while (isSpace(source[pos])) pos++;
  };
  const atEnd = () => pos >= source.length || source[pos] === "#";
  const nearToken = () => {
    const rest = source.slice(pos);
    const token = /^\S+/.exec(rest)?.[0] ?? rest;
    return `syntax error near "${token}"`;
  };

  skipSpace();
  if (atEnd()) return null;
  const nameMatch = NAME.exec(source.slice(pos));
  if (!nameMatch) throw new ConfigSyntaxError(line, nearToken());
  const name = nameMatch[0].toLowerCase();
  pos += nameMatch[0].length;
  skipSpace();
  if (source[pos] === "=") {
    pos++;
    skipSpace();
  }
  if (atEnd()) {
    throw new ConfigSyntaxError(line, `syntax error: no value for "${name}"`);
  }

  let value: string;
  let quoted = false;
  if (source[pos] === "'") {
    const { text, end } = readQuoted(source, pos, line);
    value = text;
    quoted = true;
    pos = end;
  } else {
    const valueMatch = UNQUOTED.exec(source.slice(pos));
    if (!valueMatch) throw new ConfigSyntaxError(line, nearToken());
    value = valueMatch[0];
    pos += value.length;
  }
  skipSpace();
  if (!atEnd()) {
    throw new ConfigSyntaxError(
      line,
      `${nearToken()} (a value with spaces or special characters must be in single quotes)`,
    );
  }
  return { name, value, line, quoted };
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/** Read a single-quoted string starting at `start` (the opening quote), resolving escapes. */
function readQuoted(source: string, start: number, line: number): { text: string; end: number } {
  let text = "";
  let pos = start + 1;
  while (pos < source.length) {
    const c = source[pos]!;
    if (c === "'") {
      if (source[pos + 1] === "'") {
        text += "'";
        pos += 2;
        continue;
      }
      return { text, end: pos + 1 };
    }
    if (c === "\\") {
      const next = source[pos + 1];
      if (next === undefined) break;
      const octal = /^[0-7]{1,3}/.exec(source.slice(pos + 1, pos + 4));
      if (octal) {
        text += String.fromCharCode(Number.parseInt(octal[0], 8) & 0xff);
        pos += 1 + octal[0].length;
        continue;
      }
      text += SIMPLE_ESCAPES[next] ?? next;
      pos += 2;
      continue;
    }
    text += c;
    pos++;
  }
  throw new ConfigSyntaxError(line, "unterminated quoted string");
}
