/**
 * A linearizability checker for a key-value register (one register per key),
 * in the style of Wing & Gong as improved by Lowe and used by Porcupine:
 *
 * - The history is split by key (P-compositionality: a history of independent
 *   registers is linearizable iff each key's sub-history is).
 * - Per key, a depth-first search over a doubly linked list of call/return
 *   events linearizes one pending call at a time; a return event reached
 *   before its call was linearized forces a backtrack. Every (set of
 *   linearized operations, register state) pair visited is memoized, so the
 *   same configuration is never explored twice.
 * - The search is bounded: past `budget` steps a key's answer is "unknown"
 *   rather than a hang.
 *
 * Outcomes: `ok` (the response was observed), `fail` (the operation
 * definitely did not take effect: dropped from the history), `unknown` (it may
 * or may not have taken effect: its response time is +infinity, so it may be
 * linearized anywhere after its call, including "after everything", which is
 * the same as never taking effect; an unknown read tells nothing and is dropped).
 *
 * @module
 */

/** What a client did. */
export type OpKind = "put" | "get" | "delete";

/** How an operation ended. */
export type Outcome = "ok" | "fail" | "unknown";

/** One operation of a history. */
export interface Operation {
  client: number;
  op: OpKind;
  key: string;
  /** the value written (put) */
  value?: string;
  /** what a get returned: the value, or null when the key was absent (ok gets only) */
  output?: string | null;
  /** for an ok delete, whether the key existed (optional: checked when given) */
  existed?: boolean;
  /** invocation time (ms, any monotonic clock) */
  call: number;
  /** response time; ignored (treated as +infinity) unless the outcome is ok */
  ret: number;
  outcome: Outcome;
}

/** The answer for one key. */
export interface KeyResult {
  key: string;
  result: "ok" | "violation" | "unknown";
  /** operations of the key that were checked (fail ops and unknown reads excluded) */
  ops: number;
  /** search steps taken */
  steps: number;
  /**
   * ok: a witness order (indices into the input history); operations not listed
   * (unknown writes) are taken as never applied.
   */
  order?: number[];
  /** ok: the register's value after the witness order (null = absent) */
  finalValue?: string | null;
  /** violation: the longest linearizable prefix found, and the operations it could not place */
  longestPrefix?: number[];
  stuckAt?: number[];
}

/** The answer for a whole history. */
export interface CheckResult {
  result: "ok" | "violation" | "unknown";
  keys: KeyResult[];
  /** total time spent, ms */
  ms: number;
}

/** Options for {@link checkHistory}. */
export interface CheckOptions {
  /** search steps per key before giving up with "unknown". @default 2_000_000 */
  budget?: number;
  /** the register's initial value. @default null (absent) */
  initial?: string | null;
}

type State = string | null;

interface Entry {
  /** index into the per-key op array */
  id: number;
  isCall: boolean;
  /** a call's matching return entry (null for an unknown op) */
  match: Entry | null;
  prev: Entry | null;
  next: Entry | null;
}

/** The register's transition: the next state, or undefined when the observed output is impossible. */
function step(state: State, op: Operation): State | undefined {
  switch (op.op) {
    case "put":
      return op.value ?? "";
    case "delete":
      if (op.outcome === "ok" && op.existed !== undefined && op.existed !== (state !== null)) {
        return undefined;
      }
      return null;
    case "get":
      return op.output === state ? state : undefined;
  }
}

/** Check one key's operations. `ops` are (global index, op) pairs. */
function checkKey(
  key: string,
  ops: { index: number; op: Operation }[],
  budget: number,
  initial: State,
): KeyResult {
  const n = ops.length;
  // Events: calls and (for ok ops) returns, by time; a call before a return at
  // the same instant (they overlap then).
  const events: { time: number; isCall: boolean; id: number }[] = [];
  for (let i = 0; i < n; i++) {
    const o = ops[i]!.op;
    events.push({ time: o.call, isCall: true, id: i });
    if (o.outcome === "ok") events.push({ time: o.ret, isCall: false, id: i });
  }
  events.sort((a, b) =>
    a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1)
  );
  const head: Entry = { id: -1, isCall: false, match: null, prev: null, next: null };
  const calls: Entry[] = new Array(n);
  const returns: (Entry | null)[] = new Array(n).fill(null);
  let tail = head;
  for (const e of events) {
    const entry: Entry = { id: e.id, isCall: e.isCall, match: null, prev: tail, next: null };
    tail.next = entry;
    tail = entry;
    if (e.isCall) calls[e.id] = entry;
    else returns[e.id] = entry;
  }
  for (let i = 0; i < n; i++) calls[i]!.match = returns[i] ?? null;
  let pendingReturns = returns.filter((r) => r !== null).length;

  const lift = (call: Entry) => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret.next;
      if (ret.next) ret.next.prev = ret.prev;
    }
  };
  const unlift = (call: Entry) => {
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret;
      if (ret.next) ret.next.prev = ret;
    }
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const words = Math.max(1, Math.ceil(n / 32));
  const linearized = new Uint32Array(words);
  const seen = new Set<string>();
  const keyOf = (state: State) => {
    let s = "";
    for (let w = 0; w < words; w++) s += linearized[w]!.toString(36) + ",";
    return s + (state === null ? "\u0000" : "=" + state);
  };

  const stack: { entry: Entry; state: State }[] = [];
  let state: State = initial;
  let entry: Entry | null = head.next;
  let steps = 0;
  let longest: number[] = [];
  let stuck: number[] = [];

  const result = (
    r: "ok" | "violation" | "unknown",
    extra: Partial<KeyResult> = {},
  ): KeyResult => ({
    key,
    result: r,
    ops: n,
    steps,
    ...extra,
  });

  while (pendingReturns > 0) {
    if (++steps > budget) return result("unknown");
    if (entry === null) {
      // cannot happen: a remaining return is always reached first
      throw new Error("linearizability: ran off the event list");
    }
    if (entry.isCall) {
      const op = ops[entry.id]!.op;
      const next = step(state, op);
      if (next !== undefined) {
        const w = entry.id >>> 5, bit = 1 << (entry.id & 31);
        linearized[w] = linearized[w]! | bit;
        const k = keyOf(next);
        if (!seen.has(k)) {
          seen.add(k);
          stack.push({ entry, state });
          state = next;
          lift(entry);
          if (entry.match) pendingReturns--;
          entry = head.next;
          continue;
        }
        linearized[w] = linearized[w]! & ~bit;
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized: backtrack.
      if (stack.length >= longest.length) {
        // The deepest point reached: the prefix, and the open calls none of
        // which could be placed before this return (for the report).
        longest = stack.map((s) => ops[s.entry.id]!.index);
        stuck = [];
        for (let e = head.next; e && e !== entry; e = e.next) {
          if (e.isCall) stuck.push(ops[e.id]!.index);
        }
        stuck.push(ops[entry.id]!.index);
      }
      const top = stack.pop();
      if (!top) return result("violation", { longestPrefix: longest, stuckAt: stuck });
      state = top.state;
      unlift(top.entry);
      if (top.entry.match) pendingReturns++;
      const w = top.entry.id >>> 5;
      linearized[w] = linearized[w]! & ~(1 << (top.entry.id & 31));
      entry = top.entry.next;
    }
  }
  return result("ok", {
    order: stack.map((s) => ops[s.entry.id]!.index),
    finalValue: state,
  });
}

/**
 * Check a whole history. Each key is checked on its own; the history is
 * linearizable iff every key's is ("unknown" when a search ran out of budget
 * and none failed).
 */
export function checkHistory(
  history: readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  const started = performance.now();
  const budget = options.budget ?? 2_000_000;
  const initial = options.initial ?? null;
  const byKey = new Map<string, { index: number; op: Operation }[]>();
  history.forEach((op, index) => {
    if (op.outcome === "fail") return;
    if (op.outcome === "unknown" && op.op === "get") return;
    if (op.outcome === "ok" && !(op.ret >= op.call)) {
      throw new Error(`operation ${index}: returns (${op.ret}) before its call (${op.call})`);
    }
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, list = []);
    list.push({ index, op });
  });
  const keys = [...byKey.keys()].sort().map((key) =>
    checkKey(key, byKey.get(key)!, budget, initial)
  );
  const result = keys.some((k) => k.result === "violation")
    ? "violation"
    : keys.some((k) => k.result === "unknown")
    ? "unknown"
    : "ok";
  return { result, keys, ms: performance.now() - started };
}

/**
 * Acknowledged writes that were lost: an ok put whose value is not the key's
 * final value although no write on that key could have come after it. Two
 * views: `witness` uses the checker's linearization (every ok put is the last
 * write of its key in the order, or followed by another write); `direct` needs
 * no search: an ok put p is lost when the final value differs from p's value
 * and no other write on the key (ok or unknown) returned after p was called.
 *
 * @param finalState the store's content after the run (key → value; absent keys missing)
 */
export function lostWrites(
  history: readonly Operation[],
  check: CheckResult,
  finalState: ReadonlyMap<string, string>,
): { witness: number[]; direct: number[]; finalMismatch: string[] } {
  const witness: number[] = [];
  const finalMismatch: string[] = [];
  for (const k of check.keys) {
    if (k.result !== "ok" || !k.order) continue;
    const order = k.order;
    for (let i = 0; i < order.length; i++) {
      const op = history[order[i]!]!;
      if (op.op !== "put" || op.outcome !== "ok") continue;
      const later = order.slice(i + 1).some((j) => history[j]!.op !== "get");
      if (!later && finalState.get(k.key) !== op.value) witness.push(order[i]!);
    }
    const actual = finalState.get(k.key) ?? null;
    if (actual !== (k.finalValue ?? null)) {
      // Only a mismatch if no unknown write could explain the difference.
      const explained = history.some((op) =>
        op.key === k.key && op.outcome === "unknown" &&
        (op.op === "put" ? op.value === actual : actual === null)
      );
      if (!explained) finalMismatch.push(k.key);
    }
  }
  const direct: number[] = [];
  history.forEach((p, i) => {
    if (p.op !== "put" || p.outcome !== "ok") return;
    if (finalState.get(p.key) === p.value) return;
    const overwritten = history.some((w, j) =>
      j !== i && w.key === p.key && w.op !== "get" && w.outcome !== "fail" &&
      (w.outcome === "unknown" || w.ret >= p.call)
    );
    if (!overwritten) direct.push(i);
  });
  return { witness, direct, finalMismatch };
}

/** A readable line for an operation (for failure reports). */
export function describeOp(op: Operation, index?: number, t0 = 0): string {
  const at = (t: number) => (Number.isFinite(t) ? (t - t0).toFixed(1) : "∞");
  const what = op.op === "put"
    ? `put(${op.key}, ${op.value})`
    : op.op === "delete"
    ? `delete(${op.key})${op.existed === undefined ? "" : ` -> ${op.existed}`}`
    : `get(${op.key}) -> ${op.outcome === "ok" ? JSON.stringify(op.output ?? null) : "?"}`;
  const ret = op.outcome === "ok" ? at(op.ret) : "∞";
  return `${index === undefined ? "" : `#${index} `}c${op.client} ${what} [${
    at(op.call)
  }, ${ret}] ${op.outcome}`;
}
