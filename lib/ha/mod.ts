/**
 * The HA controller (pure, no I/O): with `pgraft.manage_postgres = on`, what
 * each node does with its PostgreSQL server. {@link decide} turns what the
 * agent gathered ({@link HaInputs}) into one action ({@link HaAction});
 * lease.ts holds the leader lease arithmetic and its tracker; sync.ts the
 * `synchronous_standby_names` rule; failover.ts the comparison of servers.
 * The HA simulator (tests/sim/ha) checks the decisions before any server
 * runs them.
 *
 * @module
 */

export { decide, desiredUpstream, isEntitled, SWITCHOVER_TIMEOUT_MS } from "./controller.ts";
export {
  compareWal,
  type FailoverFacts,
  type FailoverPlan,
  type FinalPosition,
  finalPosition,
  planFailover,
  reportsNeeded,
} from "./failover.ts";
export {
  DECISION_INTERVAL_MS_DEFAULT,
  FENCE_IMMEDIATE_MS_MAX,
  fencingBudgetMs,
  LEASE_CONTEXT_PREFIX,
  LEASE_ROUNDS_PENDING_MAX,
  leaseDurationMs,
  leaseRemainingMs,
  LeaseTracker,
  type LeaseTrackerOptions,
  leaseUntil,
  MAX_CLOCK_DRIFT_DEFAULT,
  voteWithholdMs,
} from "./lease.ts";
export {
  applicationName,
  parseSynchronousStandbyNames,
  synchronousCount,
  synchronousStandbyNames,
} from "./sync.ts";
export type {
  DecideOptions,
  Decision,
  HaAction,
  HaActionType,
  HaInputs,
  HaPlantedBugs,
  HaProblem,
  LocalServer,
  Lsn,
  MemberReport,
  PrimaryRecordView,
  ServerObservation,
  ServerOperation,
  ServerStateName,
  WalState,
} from "./types.ts";
