/**
 * The data the Raft core consumes and produces. Plain values only: the core
 * performs no I/O, and everything here can be encoded by the transport and
 * persisted by the storage. Vocabulary follows the Raft paper and thesis.
 *
 * @module
 */

/** A node's identity in the cluster: 1..2147483647. 0 means "none". */
export type NodeId = number;

/** The id that stands for "no node" (no vote, no known leader). */
export const NONE: NodeId = 0;

/** Largest valid node id (PostgreSQL int4). */
export const NODE_ID_MAX = 2147483647;

/**
 * What a log entry carries.
 * - `normal`: opaque application data (empty data = the leader's no-op).
 * - `conf_change`: `data` is an encoded {@link ConfChange} (see `encodeConfChange`).
 */
export type EntryType = "normal" | "conf_change";

/** One log entry. Invariant: index >= 1, term >= 1. */
export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  data: Uint8Array;
}

/** The state Raft requires to be durable before answering any message (§5.1, Figure 2). */
export interface HardState {
  /** currentTerm */
  term: number;
  /** votedFor in `term`, or NONE */
  vote: NodeId;
  /**
   * commitIndex. Unlike term and vote it need not be synced on its own: a
   * node restarts from max(commit, applied, snapshot index) and learns the
   * rest from the leader.
   */
  commit: number;
}

/** Cluster membership: voters and non-voting learners; disjoint sets. */
export interface Membership {
  voters: NodeId[];
  learners: NodeId[];
}

/**
 * A membership change, one server at a time (thesis §4.1).
 * - `add_learner`: a new node joins as a non-voting learner.
 * - `add_voter`: promote a learner (or bootstrap the first members).
 * - `remove_node`: remove a voter or learner.
 * `context` is opaque to the core (pgraft puts the node's address and port there).
 */
export interface ConfChange {
  kind: "add_learner" | "add_voter" | "remove_node";
  nodeId: NodeId;
  context: string;
}

/** What describes a snapshot: the last entry it covers and the membership then. */
export interface SnapshotMeta {
  index: number;
  term: number;
  membership: Membership;
}

/** A snapshot of the state machine at `meta.index` (`data` is opaque to the core). */
export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/** Hint a follower gives when it rejects an append (fast backtracking, thesis §5.3). */
export interface RejectHint {
  /** The prevLogIndex of the append being rejected (lets the leader drop stale rejections). */
  rejectedIndex: number;
  /** The follower's last log index (the leader never needs to go beyond it). */
  lastIndex: number;
  /** Term of the follower's entry at the rejected prevLogIndex, 0 if it has none there. */
  conflictTerm: number;
  /** First index the follower holds for `conflictTerm` (or lastIndex+1 when conflictTerm is 0). */
  conflictIndex: number;
}

/** Fields every message carries. */
interface MessageBase {
  /** sender's term (for pre-vote requests: the term it would campaign in) */
  term: number;
  from: NodeId;
  to: NodeId;
}

/** RequestVote (§5.2) or PreVote (thesis §9.6). */
export interface VoteRequest extends MessageBase {
  type: "vote_request";
  preVote: boolean;
  /** true when sent because of TimeoutNow: voters ignore their leader lease (thesis §3.10). */
  transfer: boolean;
  lastLogIndex: number;
  lastLogTerm: number;
}

export interface VoteResponse extends MessageBase {
  type: "vote_response";
  preVote: boolean;
  granted: boolean;
}

/** AppendEntries (§5.3). Carries at most `appendBatchSize` entries. */
export interface AppendRequest extends MessageBase {
  type: "append_request";
  prevLogIndex: number;
  prevLogTerm: number;
  entries: Entry[];
  /** leaderCommit */
  commit: number;
}

export interface AppendResponse extends MessageBase {
  type: "append_response";
  success: boolean;
  /** on success: the index of the last entry now known to match the leader's log */
  matchIndex: number;
  /** on rejection: where to back up to */
  hint: RejectHint | null;
}

/**
 * Heartbeat: keeps followers from starting elections, advances their commit
 * (never beyond what they have acknowledged), and confirms leadership for
 * ReadIndex rounds via `readContext` (thesis §6.4).
 */
export interface HeartbeatRequest extends MessageBase {
  type: "heartbeat_request";
  commit: number;
  /** ReadIndex round id echoed by the follower; "" when none. */
  readContext: string;
}

export interface HeartbeatResponse extends MessageBase {
  type: "heartbeat_response";
  readContext: string;
}

/** InstallSnapshot (§7). The transport may move `snapshot.data` in chunks. */
export interface SnapshotRequest extends MessageBase {
  type: "snapshot_request";
  snapshot: Snapshot;
}

/** Leadership transfer: start an election at once (thesis §3.10). */
export interface TimeoutNow extends MessageBase {
  type: "timeout_now";
}

/** Every message between Raft nodes: a union discriminated by `type`. */
export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | HeartbeatRequest
  | HeartbeatResponse
  | SnapshotRequest
  | TimeoutNow;

export type MessageType = Message["type"];

export type Role = "follower" | "pre_candidate" | "candidate" | "leader";

/** Volatile state the application shows to people; reported in Ready when it changes. */
export interface SoftState {
  role: Role;
  leaderId: NodeId;
}

/** A ReadIndex answer: once `applied >= index`, a read for `context` is linearizable. */
export interface ReadState {
  context: string;
  index: number;
}

/**
 * What the application must do after a tick/step/propose, in this order:
 * 1. send `messagesBeforePersist` (it may do so at once, before step 2);
 * 2. persist `snapshot` (if any), then `entries` (appending at entries[0].index
 *    first deletes every stored entry with index >= entries[0].index), then
 *    `hardState` (if any) — atomically where possible. A term or vote must be
 *    durable before anything is sent on its behalf (§5.1, Figure 2); a change
 *    of `commit` alone need not be synced;
 * 3. send `messages` (only once step 2 is durable);
 * 4. apply `committedEntries` in order, and install `snapshot` in the state
 *    machine, only once step 2 is durable (they may include this Ready's own
 *    `entries`). Applying may go on beside the loop, after step 5;
 * 5. call `advance(ready)` once steps 1–3 are done and the committed entries
 *    are taken for applying; then collect the next Ready.
 */
export interface Ready {
  softState: SoftState | null;
  hardState: HardState | null;
  snapshot: Snapshot | null;
  entries: Entry[];
  /**
   * Messages that may be sent before the entries above are durable: the
   * leader's appends, heartbeats, snapshots and TimeoutNow (thesis §10.2.1:
   * the leader writes its own log in parallel with its followers). Empty
   * when this Ready changes the term or vote: nothing goes out before those
   * are durable.
   */
  messagesBeforePersist: Message[];
  /** Messages that must wait until the hard state and entries above are durable. */
  messages: Message[];
  /** Committed entries to apply, in log order (none while `snapshot` is set). */
  committedEntries: Entry[];
  /** Reads confirmed by ReadIndex (thesis §6.4): serve each once `index` is applied. */
  readStates: ReadState[];
}

/** Per-follower replication state kept by the leader (etcd's tracker.Progress). */
export interface Progress {
  id: NodeId;
  isLearner: boolean;
  matchIndex: number;
  nextIndex: number;
  /** probe: one append at a time; replicate: pipelined up to the window; snapshot: waiting */
  state: "probe" | "replicate" | "snapshot";
  /** appends in flight (replicate state; at most maxInflight) */
  inflight: number;
  /** heard from within the last election timeout */
  recentActive: boolean;
  /** ticks since the leader last heard from this node */
  lastHeardTicks: number;
}

/** A read-only view of the node for status displays. */
export interface Status {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId;
  leaderId: NodeId;
  commitIndex: number;
  /**
   * Committed entries were handed out for applying up to here, in Readies the
   * application has advanced past. It may still be applying them: its own
   * durable applied index can trail.
   */
  appliedIndex: number;
  lastIndex: number;
  lastTerm: number;
  firstIndex: number;
  snapshotIndex: number;
  membership: Membership;
  /**
   * only on the leader: one per member other than itself, and one per removed
   * node it still informs of its removal (reported as a learner)
   */
  progress: Progress[];
  /** node a leadership transfer is under way to, or NONE */
  transferTarget: NodeId;
  /** the last conf change in the log is beyond `appliedIndex` */
  pendingConfChange: boolean;
  failoverEnabled: boolean;
  /** true once the conf change removing this node has committed (it then takes no part) */
  removed: boolean;
  electionsStarted: number;
}

/**
 * Bugs that a test can plant in the core to prove the simulator catches them.
 * Never set outside tests.
 */
export interface PlantedBugs {
  /** commit by counting replicas of an entry from an older term (violates §5.4.2) */
  commitOldTermEntries?: boolean;
  /** grant votes without the log up-to-date check (violates §5.4.1) */
  voteWithoutLogCheck?: boolean;
  /** put vote responses in `messagesBeforePersist`, before the vote is durable */
  answerVoteBeforePersist?: boolean;
  /**
   * answer (pre-)vote requests while a live leader is heard (no leader
   * stickiness, thesis §4.2.3): not a safety bug, the simulator counts the
   * leaders it deposes
   */
  noLeaderStickiness?: boolean;
  /**
   * grant (pre-)votes at once after a start from persisted state, with no
   * hold (vote_hold.ts): a restarted voter forgets what it promised a
   * leader's lease, and a second leader can be elected within it
   */
  noVoteHoldAfterRestart?: boolean;
}

/** Everything the core needs besides its persisted state. Times are in ticks. */
export interface RaftConfig {
  id: NodeId;
  /** heartbeat interval in ticks (>= 1) */
  heartbeatTicks: number;
  /** election timeout in ticks (> heartbeatTicks) */
  electionTicks: number;
  /**
   * A follower's randomized election timeout is drawn from
   * [electionTicks, electionTicks + electionJitterTicks); a (pre-)candidate
   * whose election failed retries after about half that. Default electionTicks.
   */
  electionJitterTicks?: number;
  /** entries per append message (append_batch_size) */
  appendBatchSize: number;
  /** append messages in flight per follower before waiting for acknowledgements */
  maxInflight: number;
  /**
   * entries handed out for applying since the last snapshot (see
   * `Status.appliedIndex`) after which `snapshotDue()` answers true
   */
  snapshotThreshold: number;
  /** pre-vote (thesis §9.6); default true */
  preVote?: boolean;
  /**
   * check-quorum and leader lease (thesis §6.2), with leader stickiness
   * (thesis §4.2.3) and the vote hold after a start (vote_hold.ts); default true
   */
  checkQuorum?: boolean;
  /** the leader promotes a learner to voter once it has caught up; default true */
  autoPromoteLearners?: boolean;
  /** failover_enabled (see DESIGN.md); default true */
  failoverEnabled?: boolean;
  /** seeded generator, returns an integer in [0, n) — the only source of randomness */
  randomInt: (n: number) => number;
  plantedBugs?: PlantedBugs;
}

/** Timing and batching knobs that may change at run time (pgraft_set_config); see {@link RaftConfig}. */
export interface Timing {
  heartbeatTicks: number;
  electionTicks: number;
  electionJitterTicks: number;
  appendBatchSize: number;
  snapshotThreshold: number;
  maxInflight: number;
}

/** What a node restarts from: exactly what storage made durable. */
export interface PersistentState {
  hardState: HardState;
  /** latest snapshot, or null when the log starts at index 1 */
  snapshot: Snapshot | null;
  /** log entries after the snapshot, contiguous */
  entries: Entry[];
  /** last index the state machine applied (durable with the state machine) */
  applied: number;
}

/** The initial persistent state of a node that has no cluster yet. */
export function emptyState(): PersistentState {
  return {
    hardState: { term: 0, vote: NONE, commit: 0 },
    snapshot: null,
    entries: [],
    applied: 0,
  };
}
