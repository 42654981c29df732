/**
 * The HA controller: what this node must do with its PostgreSQL server now,
 * from the Raft role, the leader lease, the primary record and the servers'
 * WAL positions. Pure: {@link decide} reads nothing but its inputs. The agent
 * asks at least every lease.ts `DECISION_INTERVAL_MS_DEFAULT` ms and on every
 * change, carries out the one action it gets (unless that operation is
 * already under way), and asks again.
 *
 * ## Rules, in the order they are applied
 *
 * 1. **Never wipe another system's data directory.** A refused directory is
 *    reported (`postgres_refused`) and left alone.
 * 2. **Only the entitled leader's server accepts writes.** Entitled: Raft
 *    leader, no leadership transfer under way, and a lease (lease.ts) with at
 *    least the fencing budget left. A server that is primary (or being
 *    promoted) anywhere else is fenced now, with an immediate stop
 *    (Patroni's "immediate-nolock" demotion when it loses the leader lock).
 *    A new leader trusts the primary record only once it applied an entry of
 *    its own term (before that the record it sees may be stale).
 *    The budget covers one decision interval plus the longest stop, so the
 *    server accepts its last write before the lease ends, and the lease ends
 *    before any other node can be elected (lease.ts): two servers never
 *    accept writes in the same real instant. The primary must also be the
 *    one the committed primary record names, on the record's timeline.
 * 3. **Start as a standby first.** Once in a cluster, a stopped server is
 *    started in recovery; only promotion makes it a primary.
 * 4. **Freezing.** A standby streams from the server the committed record
 *    names only while its own Raft leader is that node (in a term ≥ the
 *    highest term a leader asked it to freeze for: the freeze takes effect
 *    before its Raft hears of the new term; the argument itself rests on the
 *    reports' terms); otherwise it streams from no one. So a deposed primary loses its synchronous standbys as they
 *    learn the new term, and once they have reported (at a term ≥ the new
 *    leader's, persisted by Raft) they never stream from it again.
 * 5. **Failover** (the leader's own server is not the recorded primary):
 *    freeze its own standby, collect final positions from enough voters
 *    other than the old primary (failover.ts has the argument), hand
 *    leadership to a more advanced voter if there is one (not while
 *    failover_enabled = off), else propose `set_primary {self, timeline + 1}`
 *    and promote only once that record is applied. The other standbys
 *    re-point at the new primary as soon as the record is applied, before it
 *    is promoted (the shortest write gap, DESIGN.md "Known traps").
 * 6. **Rejoin.** A former primary comes back as a standby; a diverged one is
 *    rewound from the primary; a failed rewind is reported
 *    (`rewind_failed`) and re-cloned only when the operator allows it; an
 *    empty data directory is cloned.
 * 7. **Switchover** (the operator's transfer to N, on the leader): clean
 *    shutdown of the primary, N's report shows it holds the final LSN, hand
 *    leadership to N; N then runs rule 5 (it is the most advanced) and the
 *    old primary follows it by rule 4. failover_enabled = off does not stop
 *    it.
 *
 * ## Timelines
 *
 * The record's timeline is max(record, every reported timeline) + 1.
 * PostgreSQL picks a promoted server's new timeline itself (the newest
 * timeline history it knows + 1); the supervisor must make it pick the
 * record's (history files of the lineage in pg_wal). A primary whose
 * timeline differs from the record's is fenced (rule 2): two servers on one
 * timeline number with different histories would defeat the comparison.
 *
 * @module
 */

import { assert } from "../assert.ts";
import { NONE } from "../raft/mod.ts";
import { compareWal, type FinalPosition, finalPosition, planFailover } from "./failover.ts";
import { synchronousStandbyNames } from "./sync.ts";
import type { DecideOptions, Decision, HaAction, HaInputs, HaPlantedBugs } from "./types.ts";

/** A switchover whose target has not taken over by then is abandoned. */
export const SWITCHOVER_TIMEOUT_MS = 5_000;

/**
 * What this node must do now, and why.
 *
 * @param inputs what the agent gathered (types.ts {@link HaInputs})
 * @param options planted bugs, for the simulator's tests only
 * @returns one action and its reason
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const wal = { timeline: 2, receivedLsn: 500, replayedLsn: 500, flushedLsn: 500 };
 * const decision = decide({
 *   nowMs: 10_000, self: 2, inCluster: true,
 *   raft: {
 *     role: "follower", term: 4, leaderId: 1, voters: [1, 2, 3], transferTarget: 0, caughtUp: true,
 *   },
 *   leaseRemainingMs: null, fencingBudgetMs: 350,
 *   primary: { nodeId: 1, timeline: 2 }, proposedPrimary: null,
 *   failoverEnabled: true, synchronous: true, recloneAllowed: false,
 *   server: { state: "primary", wal, sinceMs: 0, synchronousStandbyNames: "" },
 *   inProgress: null, members: [], reportRequest: null, frozenForTerm: 0, switchover: null,
 * });
 * assert.deepEqual(decision.action, { type: "fence", mode: "immediate" });
 * ```
 */
export function decide(inputs: HaInputs, options: DecideOptions = {}): Decision {
  checkInputs(inputs);
  const server = inputs.server;
  const isLeader = inputs.raft.role === "leader";
  if (server.state === "refused" && !isLeader) {
    return problem(
      "postgres_refused",
      `the data directory belongs to another database system (${server.detail}); ` +
        "pgraft never wipes it: move it away or point the node at an empty directory",
    );
  }
  if (!inputs.inCluster) return outsideCluster(inputs);
  const fence = fenceDecision(inputs);
  if (fence !== null) return fence;
  if (isLeader) return leaderDecision(inputs, options.plantedBugs ?? {});
  return followerDecision(inputs);
}

/**
 * Entitled to a writable primary: leader, no transfer under way, a lease with
 * at least the fencing budget left.
 */
export function isEntitled(inputs: HaInputs): boolean {
  const lease = inputs.leaseRemainingMs;
  return inputs.raft.role === "leader" && inputs.raft.transferTarget === NONE &&
    inputs.raft.caughtUp && lease !== null && lease >= inputs.fencingBudgetMs;
}

/**
 * The streaming source this node's standby should have (rule 4): the
 * recorded primary while this node's Raft leader is that node, else none.
 */
export function desiredUpstream(inputs: HaInputs): number | null {
  const record = inputs.primary;
  if (record === null || record.nodeId === NONE || record.nodeId === inputs.self) return null;
  if (inputs.raft.leaderId !== record.nodeId) return null;
  if (inputs.raft.term < inputs.frozenForTerm) return null;
  return record.nodeId;
}

// ---- rule 2: fencing ----------------------------------------------------------

function fenceDecision(inputs: HaInputs): Decision | null {
  const { server, raft, self } = inputs;
  const promoting = inputs.inProgress?.op === "promote";
  if (server.state !== "primary" && !promoting) return null;
  const what = promoting ? "the server being promoted" : "the primary";
  if (raft.role !== "leader") {
    const leader = raft.leaderId === NONE ? "none known" : `node ${raft.leaderId}`;
    return fenceNow(`${what} runs on a node that is not the Raft leader (leader: ${leader})`);
  }
  if (raft.transferTarget !== NONE) {
    return fenceNow(`leadership is being handed to node ${raft.transferTarget}`);
  }
  if (!raft.caughtUp) return fenceNow("a new leader that has not applied its own term's entry");
  const lease = inputs.leaseRemainingMs;
  if (lease === null || lease < inputs.fencingBudgetMs) {
    const left = lease === null || !Number.isFinite(lease) ? "no lease" : `${Math.round(lease)} ms`;
    return fenceNow(
      `the leader lease is below the fencing budget (${left} left, budget ` +
        `${inputs.fencingBudgetMs} ms): stop accepting writes before another node can be elected`,
    );
  }
  const record = inputs.primary;
  if (record !== null && record.nodeId !== self) {
    return fenceNow(`the primary record names node ${record.nodeId}, not this node`);
  }
  if (promoting && record === null) return fenceNow("no primary record names this node");
  if (server.state === "primary" && record !== null && server.wal.timeline !== record.timeline) {
    return fenceNow(
      `timeline mismatch: the server is on timeline ${server.wal.timeline}, the primary record ` +
        `says ${record.timeline}`,
    );
  }
  return null;
}

function fenceNow(reason: string): Decision {
  return { action: { type: "fence", mode: "immediate" }, reason };
}

// ---- the leader ------------------------------------------------------------------

function leaderDecision(inputs: HaInputs, bugs: HaPlantedBugs): Decision {
  if (!inputs.raft.caughtUp) {
    return waitFor(
      "applying the log up to this leader's own term: the primary record may be stale",
    );
  }
  if (inputs.switchover !== null) {
    const decision = switchoverDecision(inputs);
    if (decision !== null) return decision;
  }
  if (inputs.inProgress !== null) {
    // A long repair of this node's own server (start, rewind, clone) need not
    // hold the failover up: another voter may be ready (not when this server
    // was the primary: it may hold the most).
    const op = inputs.inProgress.op;
    const long = op === "start" || op === "rewind" || op === "clone";
    if (!long || inputs.primary?.nodeId === inputs.self) return waitFor(`${op} under way`);
    return failoverDecision(inputs, bugs, true);
  }
  if (inputs.server.state === "primary") return primaryDecision(inputs);
  return failoverDecision(inputs, bugs, false);
}

/** The entitled leader runs the primary (rule 2 passed): keep its settings right. */
function primaryDecision(inputs: HaInputs): Decision {
  const server = inputs.server;
  assert(server.state === "primary", "primaryDecision without a primary");
  if (inputs.primary === null) {
    if (inputs.proposedPrimary !== null) return waitFor("the primary record is being committed");
    return act(
      { type: "propose_primary", nodeId: inputs.self, timeline: server.wal.timeline },
      "record the running server as the cluster's primary",
    );
  }
  const names = synchronousStandbyNames(inputs.raft.voters, inputs.self, inputs.synchronous);
  if (server.synchronousStandbyNames !== names) {
    return act(
      { type: "set_synchronous_standby_names", value: names },
      names === "" ? "asynchronous replication" : "commits wait for a majority of the voters",
    );
  }
  return waitFor(
    `primary on timeline ${server.wal.timeline}, lease ${
      Math.round(inputs.leaseRemainingMs ?? 0)
    } ms`,
  );
}

/**
 * Rule 5: the leader's server is not the running primary. `ownBusy`: a long
 * operation runs on this node's server; its position is unknown, and only
 * the other voters can be chosen meanwhile.
 */
function failoverDecision(inputs: HaInputs, bugs: HaPlantedBugs, ownBusy: boolean): Decision {
  const { server, self, raft } = inputs;
  const record = inputs.primary;

  // This node's own server: start it, freeze it, or know where it stands.
  let own: FinalPosition | null = null;
  if (!ownBusy) {
    switch (server.state) {
      case "stopped":
        if (server.rewindFailed) break;
        return act({ type: "start_standby", upstream: null }, "start as a standby first (frozen)");
      case "starting":
        break; // unknown until it runs: the others may already be enough
      case "standby":
        if (server.upstream !== null) {
          return act({ type: "freeze" }, "stop streaming before the positions are compared");
        }
        own = finalPosition(server, self);
        break;
      case "empty":
      case "refused":
      case "diverged":
        own = finalPosition(server, self);
        break;
      case "primary":
        throw new RangeError("failoverDecision with a running primary");
    }
  }

  // The record already names this server on a later timeline: promote (rule 5's last step).
  if (
    record !== null && record.nodeId === self && own !== null && own.candidate &&
    own.wal !== null && record.timeline > own.wal.timeline && server.state === "standby"
  ) {
    return promoteDecision(inputs, record.timeline);
  }
  if (inputs.proposedPrimary !== null) {
    const proposed = inputs.proposedPrimary;
    if (
      bugs.promoteBeforeRecordCommitted && proposed.nodeId === self && server.state === "standby"
    ) {
      return promoteDecision(inputs, proposed.timeline);
    }
    return waitFor(
      `set_primary {node ${proposed.nodeId}, timeline ${proposed.timeline}} is being committed`,
    );
  }
  if (bugs.promoteWithoutCollecting && own !== null && own.candidate && own.wal !== null) {
    const timeline = Math.max(record?.timeline ?? 0, own.wal.timeline) + 1;
    return act({ type: "propose_primary", nodeId: self, timeline }, "planted bug: no comparison");
  }

  const plan = planFailover({
    self,
    term: raft.term,
    voters: raft.voters,
    oldPrimary: record?.nodeId ?? NONE,
    recordTimeline: record?.timeline ?? 0,
    own,
    members: inputs.members,
  });
  switch (plan.kind) {
    case "collect":
      return act(
        { type: "collect_lsns", from: plan.from, term: raft.term, freeze: true },
        `freeze the standbys and collect their positions (${plan.have} of ${plan.need} needed)`,
      );
    case "self":
      return act(
        { type: "propose_primary", nodeId: self, timeline: plan.timeline },
        "this server is the most advanced of a majority: record it as the primary",
      );
    case "transfer":
      if (!inputs.failoverEnabled) {
        return waitFor(
          `failover paused (failover_enabled = off): node ${plan.to} is more advanced`,
        );
      }
      if (raft.transferTarget !== NONE) {
        return waitFor(`leadership is being handed to node ${raft.transferTarget}`);
      }
      return act(
        { type: "transfer_leadership", to: plan.to },
        `node ${plan.to}'s server is more advanced: it must lead and be promoted`,
      );
    case "none":
      if (plan.from.length > 0) {
        return act(
          { type: "collect_lsns", from: plan.from, term: raft.term, freeze: true },
          `${plan.detail}; asking the members that have not reported`,
        );
      }
      return problem("no_safe_candidate", plan.detail);
  }
}

/** Promote this node's frozen standby, which the record names on `timeline`. */
function promoteDecision(inputs: HaInputs, timeline: number): Decision {
  if (!isEntitled(inputs)) return waitFor("waiting for the leader lease before promoting");
  const names = synchronousStandbyNames(inputs.raft.voters, inputs.self, inputs.synchronous);
  if (inputs.server.synchronousStandbyNames !== names) {
    return act(
      { type: "set_synchronous_standby_names", value: names },
      "set synchronous_standby_names before promoting: the first commit already waits for a majority",
    );
  }
  return act(
    { type: "promote", timeline },
    `the primary record names this node on timeline ${timeline}`,
  );
}

/**
 * Rule 7, on the leader. Null: nothing for the switchover to do (go on with
 * the rest).
 *
 * After the clean shutdown the old primary's final position is the whole
 * acknowledged history (it acknowledged every commit since its promotion and
 * held every earlier one), and no server can acknowledge anything (the
 * record's server is stopped, so the target's report is final even while it
 * still "streams" from it). A target at or beyond that position therefore
 * holds every acknowledged commit: the leader records it as the primary
 * itself, then hands it the leadership. The target freezes as soon as it
 * applies the record (rule 4: it follows no one once the record names it)
 * and promotes once it leads (rule 5's last step), without a second round of
 * reports; the standbys re-point at it as soon as it leads.
 */
function switchoverDecision(inputs: HaInputs): Decision | null {
  const { server, raft, self } = inputs;
  const switchover = inputs.switchover!;
  const target = switchover.target;
  const record = inputs.primary;
  const abandon = (why: string): Decision =>
    act({ type: "abandon_switchover", target }, `switchover to node ${target} abandoned: ${why}`);
  if (target === self) return abandon("this node already leads");
  if (!raft.voters.includes(target)) return abandon(`node ${target} is not a voter`);
  if (inputs.nowMs - switchover.requestedAtMs > SWITCHOVER_TIMEOUT_MS) {
    return abandon(`node ${target} did not take over within ${SWITCHOVER_TIMEOUT_MS} ms`);
  }
  if (raft.transferTarget !== NONE) return waitFor(`handing leadership to node ${target}`);
  if (inputs.inProgress !== null) return waitFor(`${inputs.inProgress.op} under way`);
  if (server.state === "primary") {
    return act(
      { type: "fence", mode: "fast" },
      `switchover to node ${target}: clean shutdown first, its end of WAL reaches the standbys`,
    );
  }
  const handOver = act(
    { type: "transfer_leadership", to: target },
    `switchover: the primary record names node ${target}; it leads next`,
  );
  if (record !== null && record.nodeId === target) return handOver;
  if (inputs.proposedPrimary !== null) {
    return waitFor(
      `switchover: the record naming node ${inputs.proposedPrimary.nodeId} is being committed`,
    );
  }
  if (server.state === "stopped" && record?.nodeId === self) {
    if (!server.clean || server.wal === null) return null; // a crash: the failover rules take over
    const final = server.wal;
    const report = inputs.members.find((r) =>
      r.nodeId === target && r.term >= raft.term && r.receivedAtMs >= server.sinceMs
    );
    const position = report ? finalPosition(report.server, self) : null;
    if (report === undefined || position === null) {
      return act(
        { type: "collect_lsns", from: [target], term: raft.term, freeze: false },
        `switchover: does node ${target} hold the final LSN ${final.flushedLsn}?`,
      );
    }
    if (
      position.candidate && position.wal !== null && position.wal.timeline === final.timeline &&
      compareWal(position.wal, final) >= 0
    ) {
      return act(
        {
          type: "propose_primary",
          nodeId: target,
          timeline: Math.max(record.timeline, final.timeline) + 1,
        },
        `switchover: node ${target} holds the final LSN ${final.flushedLsn}: record it as the primary`,
      );
    }
    return abandon(`node ${target} does not hold the final LSN ${final.flushedLsn}`);
  }
  // No primary ran here: the target's own failover (rule 5) decides safely.
  return handOver;
}

// ---- followers ---------------------------------------------------------------------

function followerDecision(inputs: HaInputs): Decision {
  const { server, raft } = inputs;
  if (inputs.inProgress !== null) return waitFor(`${inputs.inProgress.op} under way`);
  const upstream = desiredUpstream(inputs);
  const upstreamText = upstream === null ? "no one" : `node ${upstream}`;

  // Right now: a stopped server starts as a standby, a standby streams from the right source.
  if (server.state === "stopped" && !server.rewindFailed) {
    return act({ type: "start_standby", upstream }, `start as a standby following ${upstreamText}`);
  }
  if (server.state === "standby" && server.upstream !== upstream) {
    if (upstream === null) {
      const why = raft.term < inputs.frozenForTerm
        ? `a leader of term ${inputs.frozenForTerm} asked to freeze`
        : inputs.primary === null || raft.leaderId !== inputs.primary.nodeId
        ? "the recorded primary is not this node's Raft leader"
        : "no primary to follow";
      return act({ type: "freeze" }, `stop streaming: ${why}`);
    }
    return act({ type: "follow", upstream }, `follow the primary, node ${upstream}`);
  }

  // A leader's request for this node's position.
  const request = inputs.reportRequest;
  if (request !== null && raft.term >= request.term) {
    if (finalPosition(server, request.leader) !== null) {
      return act(
        { type: "report_lsn", to: request.leader, term: raft.term },
        `report the server's position to leader ${request.leader}`,
      );
    }
  }

  // Longer repairs.
  switch (server.state) {
    case "empty":
      if (upstream === null) return waitFor("empty data directory: waiting for a primary to clone");
      return act({ type: "clone", source: upstream }, "empty data directory: clone the primary");
    case "diverged":
      if (upstream === null) return waitFor("diverged: waiting for a primary to rewind from");
      return act(
        { type: "rewind", source: upstream },
        `the timeline diverged from node ${server.upstream}'s: rewind from the primary`,
      );
    case "stopped":
      assert(server.rewindFailed, "a stopped server starts above");
      if (inputs.recloneAllowed && upstream !== null) {
        return act({ type: "clone", source: upstream }, "the rewind failed; re-clone allowed");
      }
      return problem(
        "rewind_failed",
        "pg_rewind failed; the server stays stopped. Allow a re-clone or repair the data directory",
      );
    default:
      return waitFor(
        server.state === "standby" ? `standby following ${upstreamText}` : `server ${server.state}`,
      );
  }
}

// ---- a node in no cluster ---------------------------------------------------------

function outsideCluster(inputs: HaInputs): Decision {
  const server = inputs.server;
  if (server.state === "stopped") {
    return act({ type: "start_as_is" }, "not in a cluster yet: run the server as it is");
  }
  return waitFor(`not in a cluster yet (server ${server.state})`);
}

// ---- helpers -------------------------------------------------------------------------

function act(action: HaAction, reason: string): Decision {
  return { action, reason };
}

function waitFor(reason: string): Decision {
  return { action: { type: "wait" }, reason };
}

function problem(
  event: "postgres_refused" | "rewind_failed" | "no_safe_candidate",
  detail: string,
) {
  return { action: { type: "problem", event, detail }, reason: detail } satisfies Decision;
}

function checkInputs(inputs: HaInputs): void {
  assert(Number.isInteger(inputs.self) && inputs.self >= 1, `bad self ${inputs.self}`);
  assert(Number.isFinite(inputs.nowMs), "nowMs must be finite");
  assert(inputs.fencingBudgetMs >= 0, "fencingBudgetMs must be >= 0");
  assert(new Set(inputs.raft.voters).size === inputs.raft.voters.length, "duplicate voters");
  assert(
    (inputs.raft.role === "leader") === (inputs.leaseRemainingMs !== null),
    "leaseRemainingMs is null exactly when not leader",
  );
  assert(
    inputs.raft.role !== "leader" || inputs.raft.leaderId === inputs.self,
    "a leader is its own leader",
  );
}
