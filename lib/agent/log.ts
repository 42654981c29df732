/**
 * Structured log lines: one JSON object per line (default) or readable text,
 * each with the node id, term and role at the time of writing.
 *
 * @module
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "text";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** What every line carries about the node. */
export interface LogContext {
  node: number;
  term: number;
  role: string;
}

/** A logger bound to a context provider. */
export class Logger {
  #format: LogFormat;
  #minLevel: number;
  #context: () => LogContext;
  #write: (line: string) => void;

  constructor(options: {
    format?: LogFormat;
    level?: LogLevel;
    context: () => LogContext;
    write?: (line: string) => void;
  }) {
    this.#format = options.format ?? "json";
    this.#minLevel = LEVELS[options.level ?? "info"];
    this.#context = options.context;
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((line) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  }

  debug(msg: string, fields: Record<string, unknown> = {}): void {
    this.#log("debug", msg, fields);
  }
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.#log("info", msg, fields);
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.#log("warn", msg, fields);
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.#log("error", msg, fields);
  }

  #log(level: LogLevel, msg: string, fields: Record<string, unknown>): void {
    if (LEVELS[level] < this.#minLevel) return;
    const ctx = this.#context();
    const ts = new Date().toISOString();
    if (this.#format === "json") {
      this.#write(
        JSON.stringify({
          ts,
          level,
          node: ctx.node,
          term: ctx.term,
          role: ctx.role,
          msg,
          ...fields,
        }),
      );
      return;
    }
    const extra = Object.entries(fields).map(([k, v]) =>
      `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
    );
    this.#write(
      `${ts} ${
        level.toUpperCase().padEnd(5)
      } node=${ctx.node} term=${ctx.term} role=${ctx.role} ${msg}` +
        (extra.length ? " " + extra.join(" ") : ""),
    );
  }
}
