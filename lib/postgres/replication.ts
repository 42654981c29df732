/**
 * The vocabulary of streaming replication for the supervisor: WAL positions
 * (LSNs), the connection string a standby streams with (`primary_conninfo`),
 * timeline histories and the divergence check that tells whether a server
 * can follow a primary or must be rewound first, the replication-protocol
 * queries (`IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`) and pgraft's block in
 * `pg_hba.conf`.
 *
 * @module
 */

import postgres from "postgres";
import { openPostgres } from "./connection.ts";
import { deadline } from "../async.ts";

/** A WAL position as PostgreSQL prints it, `"0/3000148"`. */
export type Lsn = string;

/**
 * The 64-bit value of an LSN.
 *
 * @throws SyntaxError for text that is not `hex/hex`
 * @example
 * ```ts
 * if (parseLsn("1/0") !== 0x1_0000_0000n) throw new Error();
 * ```
 */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new SyntaxError(`Cannot parse WAL position "${text}": expected hex/hex`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * The text form of a 64-bit WAL position.
 *
 * @example
 * ```ts
 * if (formatLsn(0x1_0000_0028n) !== "1/28") throw new Error();
 * ```
 */
export function formatLsn(value: bigint): Lsn {
  return `${(value >> 32n).toString(16).toUpperCase()}/${
    (value & 0xffff_ffffn).toString(16).toUpperCase()
  }`;
}

/**
 * Order two LSNs: negative when `a` is behind `b`, 0 when equal, positive when ahead.
 *
 * @example
 * ```ts
 * if (!(compareLsn("0/3000000", "0/10000000") < 0)) throw new Error();
 * ```
 */
export function compareLsn(a: Lsn, b: Lsn): number {
  const x = parseLsn(a);
  const y = parseLsn(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The later of two LSNs, either of which may be missing. */
export function maxLsn(a: Lsn | null, b: Lsn | null): Lsn | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareLsn(a, b) >= 0 ? a : b;
}

/** The server a standby streams from, as the HA controller names it. */
export interface PrimaryTarget {
  host: string;
  port: number;
  /** the role standbys stream as (`pgraft.replication_user`) */
  user: string;
  /** this standby's name on the primary: what `synchronous_standby_names` lists */
  applicationName: string;
  /** the role's password, when the primary's pg_hba.conf asks for one */
  password?: string;
}

/** Seconds a standby waits for the primary to answer a connection attempt. */
export const CONNECT_TIMEOUT_S = 2;

/** A libpq connection-string value, quoted when it needs to be. */
function conninfoValue(value: string): string {
  if (value !== "" && /^[^\s'\\]+$/.test(value)) return value;
  return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/**
 * The `primary_conninfo` of a standby following `target`.
 *
 * @example
 * ```ts
 * const text = primaryConninfo({ host: "10.0.0.1", port: 5432, user: "postgres", applicationName: "n2" });
 * if (!text.includes("application_name=n2")) throw new Error();
 * ```
 */
export function primaryConninfo(target: PrimaryTarget): string {
  const parts: [string, string][] = [
    ["host", target.host],
    ["port", String(target.port)],
    ["user", target.user],
    ["application_name", target.applicationName],
    ["connect_timeout", String(CONNECT_TIMEOUT_S)],
  ];
  if (target.password !== undefined) parts.push(["password", target.password]);
  return parts.map(([key, value]) => `${key}=${conninfoValue(value)}`).join(" ");
}

/**
 * The keywords of a libpq connection string (`key=value`, values quoted with
 * single quotes and backslash escapes).
 *
 * @throws SyntaxError for text libpq would not accept
 * @example
 * ```ts
 * const info = parseConninfo("host=10.0.0.1 port=5432 application_name='node 2'");
 * if (info.get("application_name") !== "node 2") throw new Error();
 * ```
 */
export function parseConninfo(text: string): Map<string, string> {
  const result = new Map<string, string>();
  let pos = 0;
  const skip = () => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  };
  for (skip(); pos < text.length; skip()) {
    const key = /^[A-Za-z_]+/.exec(text.slice(pos))?.[0];
    if (!key) throw new SyntaxError(`Cannot parse connection string at "${text.slice(pos)}"`);
    pos += key.length;
    skip();
    if (text[pos] !== "=") {
      throw new SyntaxError(`Cannot parse connection string: "${key}" has no "="`);
    }
    pos++;
    skip();
    let value = "";
    if (text[pos] === "'") {
      for (pos++;; pos++) {
        const c = text[pos];
        if (c === undefined) {
          throw new SyntaxError("Cannot parse connection string: unterminated quote");
        }
        if (c === "'") break;
        value += c === "\\" ? (text[++pos] ?? "") : c;
      }
      pos++;
    } else {
      while (pos < text.length && !/\s/.test(text[pos]!)) {
        value += text[pos] === "\\" ? (text[++pos] ?? "") : text[pos];
        pos++;
      }
    }
    result.set(key, value);
  }
  return result;
}

/**
 * The host and port a `primary_conninfo` names, or null when it is empty or
 * names none.
 */
export function conninfoTarget(text: string): { host: string; port: number } | null {
  if (text.trim() === "") return null;
  const info = parseConninfo(text);
  const host = info.get("host") ?? info.get("hostaddr");
  if (host === undefined) return null;
  return { host, port: Number(info.get("port") ?? 5432) };
}

/**
 * A connection string to `target` for a tool (pg_rewind's `--source-server`,
 * pg_basebackup's `--dbname`), without the password (that goes in
 * `PGPASSWORD`). Its application_name is the tool's, never the standby's: a
 * tool's session must not pass for a synchronous standby.
 */
export function sourceConninfo(target: PrimaryTarget, database: string, tool: string): string {
  return [
    ["host", target.host],
    ["port", String(target.port)],
    ["user", target.user],
    ["dbname", database],
    ["application_name", tool],
    ["connect_timeout", String(CONNECT_TIMEOUT_S)],
  ].map(([key, value]) => `${key}=${conninfoValue(value!)}`).join(" ");
}

/** One line of a timeline history file: `parent` ended at `switchpoint`. */
export interface TimelineHistoryEntry {
  /** the timeline that ended */
  timeline: number;
  /** the first WAL position NOT on `timeline` (where its child begins) */
  switchpoint: Lsn;
}

/**
 * Parse a timeline history file (`00000003.history`): lines
 * `parentTLI <tab> switchpoint <tab> reason`, comments with `#`.
 *
 * @throws SyntaxError naming the bad line
 * @example
 * ```ts
 * const [first] = parseTimelineHistory("1\t0/3000148\tno recovery target specified\n");
 * if (first?.timeline !== 1 || first.switchpoint !== "0/3000148") throw new Error();
 * ```
 */
export function parseTimelineHistory(text: string): TimelineHistoryEntry[] {
  const entries: TimelineHistoryEntry[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [tli, lsn] = line.split(/\s+/);
    if (!tli || !/^\d+$/.test(tli) || !lsn) {
      throw new SyntaxError(`Cannot parse timeline history line ${index + 1}: "${line}"`);
    }
    parseLsn(lsn);
    entries.push({ timeline: Number(tli), switchpoint: lsn.toUpperCase() });
  }
  return entries;
}

/** Where a server's WAL ends, for {@link checkDivergence}. */
export interface WalPosition {
  timeline: number;
  /**
   * A running server: the end of its WAL (exclusive). A cleanly stopped one:
   * the start of its shutdown checkpoint record (`pg_controldata`'s latest
   * checkpoint location), which a follower must have received past.
   */
  lsn: Lsn;
  /** `lsn` is the start of the last record, not its end */
  lastRecordStart: boolean;
}

/**
 * Where a running standby's WAL ends for {@link checkDivergence}: the end of
 * the last record it replayed, not of what it received. The received WAL
 * may end in part of a record (its primary died in the middle of sending
 * it); a promoted standby's new timeline starts at the end of its last whole
 * record, over that part, and PostgreSQL itself compares the replay position
 * with the switch point when it moves to a new timeline. Whole records
 * received and not yet replayed count once replayed (the next observation).
 */
export function standbyWalPosition(
  state: { timeline: number | null; lsn: Lsn | null; replayLsn: Lsn | null },
): WalPosition | null {
  const lsn = state.replayLsn ?? state.lsn;
  if (lsn === null || !state.timeline) return null;
  return { timeline: state.timeline, lsn, lastRecordStart: false };
}

/** The primary's side of {@link checkDivergence}. */
export interface PrimaryHistory {
  timeline: number;
  /** the primary's flushed WAL end */
  lsn: Lsn;
  /** the parsed history file of `timeline` (empty for timeline 1) */
  history: TimelineHistoryEntry[];
}

/** Whether a server can stream from a primary, and why not. */
export type Divergence =
  | { diverged: false }
  | { diverged: true; reason: string };

/**
 * Whether the server at `local` holds WAL the primary does not have (then it
 * cannot stream from it and must be rewound), after Patroni's check: the
 * local timeline must be the primary's, or one of its ancestors that the
 * local WAL did not pass the end of.
 *
 * @example
 * ```ts
 * const primary = { timeline: 2, lsn: "0/5000000", history: [{ timeline: 1, switchpoint: "0/3000100" }] };
 * const ok = checkDivergence({ timeline: 1, lsn: "0/3000100", lastRecordStart: false }, primary);
 * const bad = checkDivergence({ timeline: 1, lsn: "0/3000200", lastRecordStart: false }, primary);
 * if (ok.diverged || !bad.diverged) throw new Error();
 * ```
 */
export function checkDivergence(local: WalPosition, primary: PrimaryHistory): Divergence {
  const at = `${local.lsn} on timeline ${local.timeline}`;
  if (local.timeline === primary.timeline) {
    const order = compareLsn(local.lsn, primary.lsn);
    const ahead = local.lastRecordStart ? order >= 0 : order > 0;
    return ahead
      ? {
        diverged: true,
        reason: `its WAL reaches ${at}, beyond the primary's ${primary.lsn} on the same timeline`,
      }
      : { diverged: false };
  }
  const entry = primary.history.find((e) => e.timeline === local.timeline);
  if (!entry) {
    return {
      diverged: true,
      reason: `its timeline ${local.timeline} is not in the history of the primary's timeline ` +
        `${primary.timeline}`,
    };
  }
  const order = compareLsn(local.lsn, entry.switchpoint);
  const past = local.lastRecordStart ? order >= 0 : order > 0;
  return past
    ? {
      diverged: true,
      reason: `its WAL reaches ${at}, past ${entry.switchpoint} where the primary's timeline ` +
        `${primary.timeline} history left timeline ${local.timeline}`,
    }
    : { diverged: false };
}

/**
 * Why a server whose WAL ends at `local` cannot stream from `primary` (asked
 * over a replication session: IDENTIFY_SYSTEM and TIMELINE_HISTORY), or null
 * when it can — or when the primary cannot be asked.
 *
 * @param systemIdentifier the cluster's, when recorded: a primary of another system is named
 */
export async function divergenceFrom(
  local: WalPosition,
  primary: PrimaryTarget,
  systemIdentifier: string | null,
  timeoutMs: number,
): Promise<string | null> {
  const sql = replicationClient(primary, "pgraft-divergence-check");
  try {
    const identity = await identifySystem(sql, timeoutMs);
    if (systemIdentifier !== null && identity.systemIdentifier !== systemIdentifier) {
      return `the primary belongs to database system ${identity.systemIdentifier}, not ${systemIdentifier}`;
    }
    const history = await timelineHistory(sql, identity.timeline, timeoutMs);
    const result = checkDivergence(local, { ...identity, history });
    return result.diverged ? result.reason : null;
  } catch {
    return null;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/**
 * IDENTIFY_SYSTEM on `target` over a short replication session.
 *
 * @param tool the session's application_name
 * @throws Error naming the target when it cannot be reached or answers nothing usable
 */
export async function identifyTarget(
  target: PrimaryTarget,
  tool: string,
  timeoutMs: number,
): Promise<SystemIdentity> {
  const sql = replicationClient(target, tool);
  try {
    return await identifySystem(sql, timeoutMs);
  } catch (error) {
    throw new Error(
      `cannot reach ${target.host}:${target.port} for replication: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** Connection parameters of a replication-protocol session. */
export interface ReplicationConnection {
  host: string;
  port: number;
  user: string;
  password?: string;
}

/** What `IDENTIFY_SYSTEM` answers. */
export interface SystemIdentity {
  /** the database system identifier (decimal, 64-bit) */
  systemIdentifier: string;
  /** a primary: its insert timeline; a standby: the timeline it replays (or receives) */
  timeline: number;
  /** a primary: flushed WAL end; a standby: the furthest of received and replayed */
  lsn: Lsn;
}

/**
 * A postgres.js client in physical replication mode (`replication=true`):
 * only replication commands, no SQL, no type lookups. The caller ends it.
 */
export function replicationClient(
  connection: ReplicationConnection,
  applicationName: string,
): postgres.Sql {
  return openPostgres({
    host: connection.host,
    port: connection.port,
    user: connection.user,
    password: connection.password,
    database: "replication",
    max: 1,
    prepare: false,
    connect_timeout: CONNECT_TIMEOUT_S,
    idle_timeout: 2,
    connection: { replication: "true", application_name: applicationName },
  });
}

/**
 * `IDENTIFY_SYSTEM` on a replication session: system identifier, timeline, WAL end.
 *
 * @throws TimeoutError after `timeoutMs`; the server's error otherwise
 */
export async function identifySystem(
  sql: postgres.Sql,
  timeoutMs: number,
): Promise<SystemIdentity> {
  const rows = await deadline(
    sql.unsafe("IDENTIFY_SYSTEM").simple(),
    timeoutMs,
    "IDENTIFY_SYSTEM",
  );
  const row = rows[0] as { systemid?: unknown; timeline?: unknown; xlogpos?: unknown } | undefined;
  if (!row || typeof row.xlogpos !== "string") {
    throw new Error(`IDENTIFY_SYSTEM answered nothing usable: ${JSON.stringify(rows)}`);
  }
  return {
    systemIdentifier: String(row.systemid),
    timeline: Number(row.timeline),
    lsn: row.xlogpos.toUpperCase(),
  };
}

/**
 * The history of `timeline` (`TIMELINE_HISTORY`); timeline 1 has none.
 *
 * @throws TimeoutError after `timeoutMs`; the server's error otherwise
 */
export async function timelineHistory(
  sql: postgres.Sql,
  timeline: number,
  timeoutMs: number,
): Promise<TimelineHistoryEntry[]> {
  if (timeline <= 1) return [];
  const rows = await deadline(
    sql.unsafe(`TIMELINE_HISTORY ${Math.trunc(timeline)}`).simple(),
    timeoutMs,
    `the history of timeline ${timeline}`,
  );
  const content = (rows[0] as { content?: unknown } | undefined)?.content;
  const text = typeof content === "string"
    ? content
    : content instanceof Uint8Array
    ? new TextDecoder().decode(content)
    : null;
  if (text === null) throw new Error(`TIMELINE_HISTORY ${timeline} answered no content`);
  return parseTimelineHistory(text);
}

/** Options of {@link hbaBlock}. */
export interface ReplicationAccess {
  /** the role standbys stream as, and pg_rewind connects as */
  user: string;
  /**
   * where they connect from besides loopback: IP addresses (a host mask is
   * added), CIDR ranges or host names
   */
  addresses?: readonly string[];
  /**
   * authentication method, e.g. `scram-sha-256` (then standbys need the
   * password) or `trust`
   */
  method: string;
  /** the database pg_rewind connects to. @default "postgres" */
  database?: string;
}

/** First and last line of pgraft's block in pg_hba.conf. */
export const HBA_BEGIN =
  "# BEGIN pgraft: replication and pg_rewind access (managed; edits are replaced)";
export const HBA_END = "# END pgraft";

function hbaAddress(address: string): string {
  if (address.includes("/")) return address;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return `${address}/32`;
  if (address.includes(":")) return `${address}/128`;
  return address; // a host name
}

function hbaToken(value: string, what: string): string {
  if (!/^[A-Za-z0-9_.:/@+-]+$/.test(value)) {
    throw new RangeError(`invalid ${what} for pg_hba.conf: "${value}"`);
  }
  return value;
}

/**
 * pgraft's lines for pg_hba.conf: replication connections (standbys,
 * pg_basebackup) and normal ones to `database` (pg_rewind) for `user`, from
 * the local socket, loopback, and `addresses`.
 *
 * @throws RangeError for a value pg_hba.conf cannot hold unquoted
 * @example
 * ```ts
 * const block = hbaBlock({ user: "postgres", method: "trust" });
 * if (!block.includes("host replication postgres 127.0.0.1/32 trust")) throw new Error();
 * ```
 */
export function hbaBlock(access: ReplicationAccess): string {
  const user = hbaToken(access.user, "user");
  const method = hbaToken(access.method, "method");
  const database = hbaToken(access.database ?? "postgres", "database");
  const addresses = ["127.0.0.1/32", "::1/128"];
  for (const address of access.addresses ?? []) {
    const entry = hbaAddress(hbaToken(address, "address"));
    if (!addresses.includes(entry)) addresses.push(entry);
  }
  const lines = [HBA_BEGIN];
  lines.push(`local replication ${user} ${method}`, `local ${database} ${user} ${method}`);
  for (const address of addresses) {
    lines.push(`host replication ${user} ${address} ${method}`);
    lines.push(`host ${database} ${user} ${address} ${method}`);
  }
  lines.push(HBA_END);
  return lines.join("\n");
}

/**
 * `text` (a pg_hba.conf) with pgraft's block first (pg_hba.conf is read top
 * down and the first matching line wins), replacing any earlier one.
 *
 * @example
 * ```ts
 * const once = withHbaBlock("local all all peer\n", hbaBlock({ user: "postgres", method: "trust" }));
 * if (withHbaBlock(once, hbaBlock({ user: "postgres", method: "trust" })) !== once) throw new Error();
 * ```
 */
export function withHbaBlock(text: string, block: string): string {
  const begin = text.indexOf(HBA_BEGIN);
  let rest = text;
  if (begin >= 0) {
    const end = text.indexOf(HBA_END, begin);
    const after = end < 0 ? text.length : end + HBA_END.length;
    rest = (text.slice(0, begin) + text.slice(after)).replace(/^\n+/, "");
  }
  return `${block}\n${rest}`;
}
