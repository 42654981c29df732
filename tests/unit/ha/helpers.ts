/**
 * Builders for the HA controller's inputs: a healthy three-node cluster seen
 * from one node, which each test changes where it matters.
 *
 * @module
 */

import type {
  HaInputs,
  LocalServer,
  MemberReport,
  ServerObservation,
  WalState,
} from "../../../lib/ha/mod.ts";

/** A WAL position (received = replayed = flushed). */
export function at(timeline: number, lsn: number): WalState {
  return { timeline, receivedLsn: lsn, replayedLsn: lsn, flushedLsn: lsn };
}

/** A local server from an observation. */
export function local(
  observation: ServerObservation,
  extra: Partial<{ sinceMs: number; synchronousStandbyNames: string }> = {},
): LocalServer {
  return { sinceMs: 0, synchronousStandbyNames: "", ...observation, ...extra };
}

/** A member's report. */
export function report(
  nodeId: number,
  server: ServerObservation,
  extra: Partial<MemberReport> = {},
): MemberReport {
  const frozen = server.state !== "standby" || server.upstream === null;
  return { nodeId, term: 5, server, frozen, receivedAtMs: 9_000, ...extra };
}

/** A frozen standby at (timeline, lsn). */
export function frozenAt(timeline: number, lsn: number): ServerObservation {
  return { state: "standby", upstream: null, wal: at(timeline, lsn) };
}

/**
 * Node 2 of voters [1, 2, 3], term 5: a follower of leader 1, whose server is
 * the recorded primary on timeline 3; node 2's server streams from it.
 */
export function follower(overrides: Partial<HaInputs> = {}): HaInputs {
  return {
    nowMs: 10_000,
    self: 2,
    inCluster: true,
    raft: {
      role: "follower",
      term: 5,
      leaderId: 1,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    leaseRemainingMs: null,
    fencingBudgetMs: 350,
    primary: { nodeId: 1, timeline: 3 },
    proposedPrimary: null,
    failoverEnabled: true,
    synchronous: true,
    recloneAllowed: false,
    server: local({ state: "standby", upstream: 1, wal: at(3, 500) }),
    inProgress: null,
    members: [],
    reportRequest: null,
    frozenForTerm: 0,
    switchover: null,
    ...overrides,
  };
}

/** Node 1, the entitled leader of term 5, running the recorded primary (timeline 3). */
export function leader(overrides: Partial<HaInputs> = {}): HaInputs {
  return follower({
    self: 1,
    raft: {
      role: "leader",
      term: 5,
      leaderId: 1,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    leaseRemainingMs: 800,
    server: local({ state: "primary", wal: at(3, 600) }, {
      synchronousStandbyNames: "ANY 1 (pgraft_node_2, pgraft_node_3)",
    }),
    ...overrides,
  });
}

/**
 * Node 2, just elected leader of term 6 after node 1 (the recorded primary)
 * was lost; its own server is a frozen standby at (3, 500).
 */
export function newLeader(overrides: Partial<HaInputs> = {}): HaInputs {
  return follower({
    raft: {
      role: "leader",
      term: 6,
      leaderId: 2,
      voters: [1, 2, 3],
      transferTarget: 0,
      caughtUp: true,
    },
    leaseRemainingMs: 800,
    server: local(frozenAt(3, 500)),
    ...overrides,
  });
}
