/**
 * The safety properties of Raft (Figure 3 of the paper, plus what the thesis
 * adds for reads and votes), checked incrementally after every simulator step.
 * A broken property throws a {@link Violation} that ends the run.
 *
 * @module
 */

import type { Entry, NodeId } from "../../lib/raft/mod.ts";

/** The properties the checker enforces. */
export type Property =
  | "election safety"
  | "leader append-only"
  | "log matching"
  | "leader completeness"
  | "state machine safety"
  | "commit index"
  | "applied once"
  | "vote safety"
  | "read index safety"
  | "storage contract"
  | "liveness"
  | "core exception";

/** A broken property: what, and a readable explanation. */
export class Violation extends Error {
  override name = "Violation";
  readonly property: Property;

  constructor(property: Property, message: string) {
    super(`${property}: ${message}`);
    this.property = property;
  }
}

const DECODER = new TextDecoder();

/** Readable text of an entry's data. */
export function entryText(entry: Entry): string {
  return DECODER.decode(entry.data);
}

/** Identity of an entry: term, type and data (same key ⇔ same entry). */
export function entryKey(entry: Entry): string {
  return `${entry.term}/${entry.type === "normal" ? "n" : "c"}/${entryText(entry)}`;
}

/** What the checker needs to see of one node's log (durable + in memory). */
export interface LogView {
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly lastIndex: number;
  /** The entry at `index`, undefined when compacted or beyond the end. */
  entryAt(index: number): Entry | undefined;
}

/** FNV-1a over a string, chained onto `previous`. */
export function chainHash(previous: number, text: string): number {
  let h = (previous ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

const TERM_BITS = 2 ** 24;

/** Cluster-wide record of what happened, and the property checks on it. */
export class SafetyChecker {
  /** term → the one leader of that term */
  readonly leaderOfTerm = new Map<number, NodeId>();
  /** term → highest commitIndex a leader of that term reached */
  readonly #commitByTerm = new Map<number, number>();
  /** committed[i] = key of the entry committed at index i (index 0 unused) */
  readonly #committed: string[] = [""];
  /** committedHash[i] = hash chain of the committed entries 1..i */
  readonly #committedHash: number[] = [0];
  /** payload text → index it was committed at (proposals are unique) */
  readonly #payloadIndex = new Map<string, number>();
  /** (index, term) → key and previous term, for log matching */
  readonly #logPairs = new Map<number, { key: string; prevTerm: number }>();
  /** (term, voter) → candidate it granted its vote to */
  readonly #votes = new Map<number, NodeId>();
  /** read context → lowest index that reflects every write committed before the read */
  readonly #reads = new Map<string, number>();

  /** Highest index known committed anywhere. */
  get committedIndex(): number {
    return this.#committed.length - 1;
  }

  /** Key of the committed entry at `index`, if known. */
  committedKey(index: number): string | undefined {
    return index >= 1 ? this.#committed[index] : undefined;
  }

  /** Hash chain of the committed sequence through `index`. */
  committedHash(index: number): number | undefined {
    return this.#committedHash[index];
  }

  /** Number of elections won (terms with a leader). */
  get elections(): number {
    return this.leaderOfTerm.size;
  }

  /**
   * Election safety (§5.2): at most one leader per term. Returns true when
   * `node` is the first leader seen in `term` (it has just been elected).
   */
  observeLeader(node: NodeId, term: number): boolean {
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) {
      this.leaderOfTerm.set(term, node);
      return true;
    }
    if (known !== node) {
      throw new Violation(
        "election safety",
        `two leaders in term ${term}: n${known} and n${node}`,
      );
    }
    return false;
  }

  /**
   * Leader completeness (§5.4): a leader of `term` holds every entry committed
   * by the leaders of earlier terms (compacted entries count as held).
   */
  checkLeaderCompleteness(node: NodeId, term: number, log: LogView): void {
    let required = 0;
    for (const [t, commit] of this.#commitByTerm) {
      if (t < term && commit > required) required = commit;
    }
    required = Math.min(required, this.committedIndex);
    for (let i = Math.max(1, log.snapshotIndex + 1); i <= required; i++) {
      const entry = log.entryAt(i);
      const want = this.#committed[i];
      if (entry === undefined) {
        throw new Violation(
          "leader completeness",
          `n${node} became leader of term ${term} with lastIndex ${log.lastIndex} ` +
            `but index ${i} (${want}) was committed before`,
        );
      }
      const key = entryKey(entry);
      if (key !== want) {
        throw new Violation(
          "leader completeness",
          `n${node} became leader of term ${term} holding ${key} at index ${i} ` +
            `where ${want} was committed before`,
        );
      }
    }
  }

  /**
   * Record a leader's commitIndex: the entries up to it become committed
   * (their keys must agree with what is already committed).
   */
  observeLeaderCommit(node: NodeId, term: number, commitIndex: number, log: LogView): void {
    if (commitIndex > log.lastIndex) {
      throw new Violation(
        "commit index",
        `leader n${node} has commitIndex ${commitIndex} beyond its lastIndex ${log.lastIndex}`,
      );
    }
    const before = this.#commitByTerm.get(term) ?? 0;
    if (commitIndex <= before) return;
    this.#commitByTerm.set(term, commitIndex);
    for (let i = Math.max(before + 1, log.snapshotIndex + 1); i <= commitIndex; i++) {
      const entry = log.entryAt(i);
      if (entry === undefined) break;
      this.#recordCommitted(node, entry, "committed by leader");
    }
  }

  /** State machine safety: `node` applies `entry`; all nodes apply the same entry at an index. */
  observeApply(node: NodeId, entry: Entry): void {
    this.#recordCommitted(node, entry, "applied");
  }

  #recordCommitted(node: NodeId, entry: Entry, how: string): void {
    const key = entryKey(entry);
    const index = entry.index;
    const known = this.#committed[index];
    if (known !== undefined) {
      if (known !== key) {
        throw new Violation(
          "state machine safety",
          `n${node} ${how} ${key} at index ${index} where ${known} was committed`,
        );
      }
      return;
    }
    if (index !== this.#committed.length) {
      // A gap: only possible if the committed prefix was never seen whole,
      // which cannot happen as commits are recorded from index 1 upwards.
      throw new Violation(
        "state machine safety",
        `n${node} ${how} index ${index} but only ${this.committedIndex} entries are known committed`,
      );
    }
    this.#committed.push(key);
    this.#committedHash.push(chainHash(this.#committedHash[index - 1] ?? 0, key));
    if (entry.type === "normal" && entry.data.length > 0) {
      const text = entryText(entry);
      const at = this.#payloadIndex.get(text);
      if (at !== undefined && at !== index) {
        throw new Violation(
          "applied once",
          `proposal "${text}" committed twice: at index ${at} and ${index}`,
        );
      }
      this.#payloadIndex.set(text, index);
    }
  }

  /**
   * Log matching (§5.3): entries appended to a node's log at `entries[0].index`
   * where the entry before holds `prevTerm`. If two logs hold an entry with the
   * same index and term, the entries and the term before them are the same; by
   * induction the logs are identical up to there.
   */
  observeAppend(node: NodeId, entries: readonly Entry[], prevTerm: number): void {
    let previous = prevTerm;
    for (const entry of entries) {
      const pairKey = entry.index * TERM_BITS + entry.term;
      const key = entryKey(entry);
      const known = this.#logPairs.get(pairKey);
      if (known === undefined) {
        this.#logPairs.set(pairKey, { key, prevTerm: previous });
      } else if (known.key !== key || known.prevTerm !== previous) {
        throw new Violation(
          "log matching",
          `n${node} holds ${key} at index ${entry.index} after term ${previous}; ` +
            `another log holds ${known.key} there after term ${known.prevTerm}`,
        );
      }
      previous = entry.term;
    }
  }

  /** A voter sent a granted (non-pre) vote: one candidate per term per voter. */
  observeVoteGranted(voter: NodeId, term: number, candidate: NodeId): void {
    const key = term * 65536 + voter;
    const known = this.#votes.get(key);
    if (known === undefined) {
      this.#votes.set(key, candidate);
    } else if (known !== candidate) {
      throw new Violation(
        "vote safety",
        `n${voter} granted its term ${term} vote to n${known} and then to n${candidate}`,
      );
    }
  }

  /** A ReadIndex round starts: it must reflect everything committed so far. */
  observeReadStart(context: string): void {
    this.#reads.set(context, this.committedIndex);
  }

  /** A ReadIndex round answered at `index` on `node`. */
  observeReadState(node: NodeId, context: string, index: number): void {
    const required = this.#reads.get(context);
    if (required === undefined) return;
    this.#reads.delete(context);
    if (index < required) {
      throw new Violation(
        "read index safety",
        `read "${context}" on n${node} answered at index ${index}, ` +
          `but index ${required} was committed before the read started`,
      );
    }
  }
}
