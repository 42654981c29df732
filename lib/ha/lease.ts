/**
 * The leader lease, in one place: how long a leader may treat itself as the
 * only node entitled to a writable PostgreSQL primary, and when it must
 * fence its server.
 *
 * ## Why a quorum-acknowledged round gives a lease (Raft thesis §6.4, §4.2.3)
 *
 * The leader starts a round at time `s` on its clock (a ReadIndex heartbeat
 * carrying a context, lib/raft/read_only.ts) and a quorum Q of voters answers
 * it. Each voter in Q received the heartbeat at some time ≥ s and reset its
 * election timer then. From then on, for `W` on its own clock (see
 * {@link voteWithholdMs}), it neither grants a vote nor a pre-vote to any other
 * candidate: lib/raft/node.ts drops a vote request for a later term while
 * `electionElapsed < electionTicks` (check-quorum's "leader lease", thesis
 * §4.2.3), and the leader itself never votes while it leads. Any new leader
 * needs a quorum of votes, and every quorum meets Q, so no other node can be
 * elected before some voter of Q has been silent for W of its own time.
 *
 * Clocks drift. With each clock's rate within [1 − d, 1 + d] of real time
 * (d = maxClockDrift), W on a voter's clock lasts at least W / (1 + d) real
 * time, and a lease of L on the leader's clock lasts at most L / (1 − d). So
 * the lease is safe when L / (1 − d) ≤ W / (1 + d):
 *
 *     leaseUntil = s + W × (1 − d) / (1 + d)
 *
 * The thesis writes "start + election timeout / clock drift bound", with the
 * bound on the ratio of two clocks' rates; `W × (1 − d)` alone is that rule
 * only when d bounds the *relative* drift of two clocks. Here d bounds each
 * clock against real time, so the ratio can reach (1 + d) / (1 − d), and the
 * margin is taken on both sides (the HA simulator has a planted bug that
 * takes it on one side only).
 *
 * Exceptions, each closed here or by the agent:
 * - Leadership transfer: a candidate sent TimeoutNow campaigns with the
 *   transfer flag, which voters honour inside their lease. The leader gives
 *   up its lease the moment it starts a transfer ({@link LeaseTracker.transferStarted})
 *   and the controller starts one only after its server stopped accepting
 *   writes. Rounds started before the transfer ended plus W do not count
 *   (a late TimeoutNow or transfer vote; messages are assumed to arrive
 *   within W / 2, which the transport's request timeout enforces).
 * - A restarted agent has forgotten when it last heard from the leader. Its
 *   Raft core drops vote and pre-vote requests (all but transfer ones) for an
 *   election timeout after it starts (lib/raft/vote_hold.ts), so a voter's
 *   promise survives its restart; the HA simulator's planted bug
 *   `no_vote_hold_after_restart` (the core's `noVoteHoldAfterRestart`) leaves
 *   that out.
 * - Check-quorum steps a leader down only once a quorum has been silent for
 *   an election timeout (≥ W on its clock after the last answer, itself after
 *   s), so after its lease has ended.
 *
 * @module
 */

import { assert } from "../assert.ts";

/**
 * Default bound on each clock's rate error against real time. A monotonic
 * clock drifts by its crystal (±100 ppm) plus NTP slewing (≤ 500 ppm): 0.01
 * is ten times that.
 */
export const MAX_CLOCK_DRIFT_DEFAULT = 0.01;

/**
 * Upper bound on an immediate stop (`pg_ctl stop -m immediate`: SIGQUIT to
 * the postmaster, which kills every backend) until the postmaster is gone.
 * Measured on this 2-core machine under pgbench (8 clients): 39–41 ms; a fast
 * shutdown took 78–122 ms there (DESIGN.md "Known traps": 0.4–0.6 s for a
 * busy primary, about 1 s with the CPUs saturated, pg_ctl's own 100 ms
 * polling included). 250 ms covers saturated CPUs with room.
 */
export const FENCE_IMMEDIATE_MS_MAX = 250;

/** How often the agent asks the controller at least (it also asks on every change). */
export const DECISION_INTERVAL_MS_DEFAULT = 50;

/** Rounds awaiting their quorum kept at once; older ones are forgotten (no lease from them). */
export const LEASE_ROUNDS_PENDING_MAX = 64;

/** The prefix of the ReadIndex contexts the lease tracker uses. */
export const LEASE_CONTEXT_PREFIX = "pgraft-lease:";

/**
 * How long a follower's Raft core withholds its vote after hearing from the
 * leader, in milliseconds of its own clock: its election timer counts ticks,
 * the first of which may come right after the heartbeat, so
 * `(electionTicks − 1) × tickMs`.
 *
 * @param electionTicks the core's electionTicks
 * @param tickMs milliseconds per tick
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(voteWithholdMs(100, 10), 990);
 * ```
 */
export function voteWithholdMs(electionTicks: number, tickMs: number): number {
  assert(
    Number.isInteger(electionTicks) && electionTicks >= 2,
    `bad electionTicks ${electionTicks}`,
  );
  assert(tickMs > 0, `bad tickMs ${tickMs}`);
  return (electionTicks - 1) * tickMs;
}

/**
 * The lease one quorum-acknowledged round gives, on the leader's clock.
 *
 * @param withholdMs how long a voter withholds its vote after hearing from the
 *   leader, on its clock ({@link voteWithholdMs})
 * @param maxClockDrift bound on each clock's rate error (0 ≤ d < 1)
 * @returns `withholdMs × (1 − d) / (1 + d)`
 */
export function leaseDurationMs(withholdMs: number, maxClockDrift: number): number {
  assert(withholdMs >= 0, `bad withholdMs ${withholdMs}`);
  assert(maxClockDrift >= 0 && maxClockDrift < 1, `bad maxClockDrift ${maxClockDrift}`);
  return withholdMs * (1 - maxClockDrift) / (1 + maxClockDrift);
}

/**
 * When the lease from a round started at `roundStartMs` and acknowledged by
 * a quorum ends, on the leader's clock.
 *
 * @param roundStartMs when the leader started the round (before sending it)
 * @param electionTimeoutMs the voters' vote withholding time ({@link voteWithholdMs})
 * @param maxClockDrift bound on each clock's rate error
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(leaseUntil(1000, 990, 0), 1990);
 * assert.ok(leaseUntil(1000, 990, 0.01) < 1990 - 19);
 * ```
 */
export function leaseUntil(
  roundStartMs: number,
  electionTimeoutMs: number,
  maxClockDrift: number,
): number {
  return roundStartMs + leaseDurationMs(electionTimeoutMs, maxClockDrift);
}

/**
 * What is left of a lease (negative once over).
 *
 * @param leaseUntilMs from {@link leaseUntil}
 * @param nowMs the leader's clock
 */
export function leaseRemainingMs(leaseUntilMs: number, nowMs: number): number {
  return leaseUntilMs - nowMs;
}

/**
 * The fencing budget: a leader fences once its lease has less than this
 * left, so that its server accepts no write once the lease is over. It is the
 * time from one decision to the next plus the longest stop.
 *
 * @param options `decisionIntervalMs` (default {@link DECISION_INTERVAL_MS_DEFAULT}),
 *   `stopMsMax` (default {@link FENCE_IMMEDIATE_MS_MAX}), `marginMs` (default 50)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(fencingBudgetMs(), 350);
 * ```
 */
export function fencingBudgetMs(
  options: { decisionIntervalMs?: number; stopMsMax?: number; marginMs?: number } = {},
): number {
  const decision = options.decisionIntervalMs ?? DECISION_INTERVAL_MS_DEFAULT;
  const stop = options.stopMsMax ?? FENCE_IMMEDIATE_MS_MAX;
  const margin = options.marginMs ?? 50;
  assert(decision >= 0 && stop >= 0 && margin >= 0, "fencing budget parts must be >= 0");
  return decision + stop + margin;
}

/** Options of {@link LeaseTracker}. */
export interface LeaseTrackerOptions {
  /** the voters' vote withholding time, {@link voteWithholdMs} */
  withholdMs: number;
  /** bound on each clock's rate error; @default MAX_CLOCK_DRIFT_DEFAULT */
  maxClockDrift?: number;
}

/**
 * The leader's lease from its ReadIndex rounds (pure: the agent passes its
 * clock). The agent, while leader:
 * 1. on becoming leader: {@link becameLeader};
 * 2. every heartbeat interval: `ctx = startRound(now)`, then
 *    `node.readIndex(ctx)`;
 * 3. for each `ReadState` whose context starts with {@link LEASE_CONTEXT_PREFIX}:
 *    {@link confirmed};
 * 4. just before `node.transferLeadership(n)`: {@link transferStarted}; when
 *    `Status.transferTarget` is back to 0 while still leader: {@link transferEnded};
 * 5. on losing leadership: {@link lost}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const lease = new LeaseTracker({ withholdMs: 990, maxClockDrift: 0 });
 * lease.becameLeader(3, 0);
 * const ctx = lease.startRound(100);
 * assert.equal(lease.remainingMs(150), -Infinity);
 * lease.confirmed(ctx);
 * assert.equal(lease.remainingMs(150), 940);
 * ```
 */
export class LeaseTracker {
  readonly #withholdMs: number;
  readonly #drift: number;
  #leading = false;
  #term = 0;
  #seq = 0;
  /** round context → start time, oldest first (Map keeps insertion order) */
  #rounds = new Map<string, number>();
  #untilMs = -Infinity;
  #transferring = false;
  /** rounds started before this give no lease (after a transfer) */
  #noLeaseBeforeMs = -Infinity;

  constructor(options: LeaseTrackerOptions) {
    this.#withholdMs = options.withholdMs;
    this.#drift = options.maxClockDrift ?? MAX_CLOCK_DRIFT_DEFAULT;
    leaseDurationMs(this.#withholdMs, this.#drift); // validates
  }

  /** This node became leader in `term`: no lease until a round of this term is confirmed. */
  becameLeader(term: number, _nowMs: number): void {
    this.#reset();
    this.#leading = true;
    this.#term = term;
  }

  /** This node is no longer leader. */
  lost(): void {
    this.#reset();
  }

  /**
   * Start a round now; pass the returned context to `readIndex`.
   *
   * @returns the ReadIndex context of the round
   */
  startRound(nowMs: number): string {
    assert(this.#leading, "startRound while not leader");
    const context = `${LEASE_CONTEXT_PREFIX}${this.#term}:${++this.#seq}`;
    this.#rounds.set(context, nowMs);
    if (this.#rounds.size > LEASE_ROUNDS_PENDING_MAX) {
      const oldest = this.#rounds.keys().next().value;
      if (oldest !== undefined) this.#rounds.delete(oldest);
    }
    return context;
  }

  /** A quorum confirmed the round `context` (a ReadState came back for it). */
  confirmed(context: string): void {
    const start = this.#rounds.get(context);
    if (start === undefined || !this.#leading) return;
    // The core confirms rounds in order: every older round is done too.
    for (const key of [...this.#rounds.keys()]) {
      this.#rounds.delete(key);
      if (key === context) break;
    }
    if (this.#transferring || start < this.#noLeaseBeforeMs) return;
    this.#untilMs = Math.max(this.#untilMs, leaseUntil(start, this.#withholdMs, this.#drift));
  }

  /** A leadership transfer starts: the lease is given up at once. */
  transferStarted(_nowMs: number): void {
    this.#transferring = true;
    this.#untilMs = -Infinity;
  }

  /** The transfer ended and this node still leads: rounds from W after now count again. */
  transferEnded(nowMs: number): void {
    if (!this.#transferring) return;
    this.#transferring = false;
    this.#noLeaseBeforeMs = nowMs + this.#withholdMs;
  }

  /** The lease left at `nowMs` (−Infinity when none), or null when not leader. */
  remainingMs(nowMs: number): number | null {
    if (!this.#leading) return null;
    return leaseRemainingMs(this.#untilMs, nowMs);
  }

  #reset(): void {
    this.#leading = false;
    this.#rounds.clear();
    this.#untilMs = -Infinity;
    this.#transferring = false;
    this.#noLeaseBeforeMs = -Infinity;
  }
}
