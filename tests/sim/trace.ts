/**
 * The event trace of a run: a ring of the last events (formatted only when
 * shown) and, on request, a digest of every event to prove determinism.
 *
 * @module
 */

import type { Entry, Message, Ready } from "../../lib/raft/mod.ts";
import { chainHash, entryText } from "./checker.ts";

/** What an event carries besides its kind and node. */
export type EventDetail = string | Message | Ready | null;

interface TraceEvent {
  tick: number;
  kind: string;
  node: number;
  detail: EventDetail;
}

/** How many events a violation report shows. */
export const TRACE_EVENTS_SHOWN = 60;

/** A bounded ring of events; optionally every event is printed and hashed. */
export class Trace {
  readonly #ring: (TraceEvent | undefined)[];
  #next = 0;
  #count = 0;
  #digest = 0;
  readonly #hashEvents: boolean;
  readonly #print: ((line: string) => void) | undefined;

  constructor(options: { capacity?: number; digest?: boolean; print?: (line: string) => void }) {
    this.#ring = new Array(options.capacity ?? TRACE_EVENTS_SHOWN);
    this.#hashEvents = options.digest === true || options.print !== undefined;
    this.#print = options.print;
  }

  /** Events recorded so far. */
  get count(): number {
    return this.#count;
  }

  /** Hash of every event (0 unless the trace was built with `digest`). */
  get digest(): number {
    return this.#digest;
  }

  /** Record one event. */
  add(tick: number, kind: string, node: number, detail: EventDetail = null): void {
    const event = { tick, kind, node, detail };
    this.#ring[this.#next] = event;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#count++;
    if (this.#hashEvents) {
      const line = formatEvent(event);
      this.#digest = chainHash(this.#digest, line);
      this.#print?.(line);
    }
  }

  /** The last events, oldest first, formatted. */
  lines(): string[] {
    const out: string[] = [];
    const n = this.#ring.length;
    for (let k = 0; k < n; k++) {
      const event = this.#ring[(this.#next + k) % n];
      if (event !== undefined) out.push(formatEvent(event));
    }
    return out;
  }
}

function formatEvent(e: TraceEvent): string {
  const head = `t=${e.tick} ${e.kind}${e.node > 0 ? ` n${e.node}` : ""}`;
  if (e.detail === null) return head;
  if (typeof e.detail === "string") return `${head} ${e.detail}`;
  if ("type" in e.detail) return `${head} ${formatMessage(e.detail)}`;
  return `${head} ${formatReady(e.detail)}`;
}

function formatEntries(entries: readonly Entry[]): string {
  if (entries.length === 0) return "[]";
  const shown = entries.slice(0, 3).map((e) =>
    `${e.index}:t${e.term}${e.type === "conf_change" ? ":conf" : ""}${
      e.data.length > 0 ? `:${entryText(e).slice(0, 40)}` : ":noop"
    }`
  );
  const more = entries.length > 3 ? ` …+${entries.length - 3}` : "";
  return `[${shown.join(" ")}${more}]`;
}

/** One line describing a message. */
export function formatMessage(m: Message): string {
  const head = `${m.type} ${m.from}→${m.to} t${m.term}`;
  switch (m.type) {
    case "vote_request":
      return `${head}${m.preVote ? " pre" : ""}${
        m.transfer ? " transfer" : ""
      } last=${m.lastLogIndex}:t${m.lastLogTerm}`;
    case "vote_response":
      return `${head}${m.preVote ? " pre" : ""} ${m.granted ? "granted" : "rejected"}`;
    case "append_request":
      return `${head} prev=${m.prevLogIndex}:t${m.prevLogTerm} commit=${m.commit} ${
        formatEntries(m.entries)
      }`;
    case "append_response":
      return `${head} ${m.success ? "ok" : "reject"} match=${m.matchIndex}${
        m.hint ? ` hint=${JSON.stringify(m.hint)}` : ""
      }`;
    case "heartbeat_request":
      return `${head} commit=${m.commit}${m.readContext ? ` read=${m.readContext}` : ""}`;
    case "heartbeat_response":
      return `${head}${m.readContext ? ` read=${m.readContext}` : ""}`;
    case "snapshot_request":
      return `${head} snap=${m.snapshot.meta.index}:t${m.snapshot.meta.term}`;
    case "timeout_now":
      return head;
  }
}

/** One line describing a Ready. */
export function formatReady(r: Ready): string {
  const parts: string[] = [];
  if (r.softState) parts.push(`soft=${r.softState.role}/leader${r.softState.leaderId}`);
  if (r.hardState) {
    parts.push(`hard=t${r.hardState.term}/vote${r.hardState.vote}/commit${r.hardState.commit}`);
  }
  if (r.snapshot) parts.push(`snapshot=${r.snapshot.meta.index}:t${r.snapshot.meta.term}`);
  if (r.entries.length > 0) parts.push(`entries=${formatEntries(r.entries)}`);
  if (r.messagesBeforePersist.length > 0) {
    parts.push(`early=${r.messagesBeforePersist.map((m) => `${m.type}→${m.to}`).join(",")}`);
  }
  if (r.messages.length > 0) parts.push(`msgs=${r.messages.length}`);
  if (r.committedEntries.length > 0) {
    const first = r.committedEntries[0]!.index;
    const last = r.committedEntries[r.committedEntries.length - 1]!.index;
    parts.push(`apply=${first}..${last}`);
  }
  if (r.readStates.length > 0) {
    parts.push(`reads=${r.readStates.map((s) => `${s.context}@${s.index}`).join(",")}`);
  }
  return parts.join(" ");
}
