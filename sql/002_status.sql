-- What the agent publishes about itself: its live view (refreshed on every
-- change and at least every heartbeat), the effective configuration, the rules
-- of lib/state/limits.ts, and events.
--
-- The live view is logged, not UNLOGGED, although it is only live data: with
-- pgraft.manage_postgres only the primary's agent publishes, and the standbys
-- answer every monitoring function from what streaming replication brings
-- them (an unlogged table cannot even be read during recovery). The agent
-- writes it with synchronous_commit = off (sql/011_agent_writes.sql), so the
-- WAL it makes never waits for a flush or a standby.

-- The agent's own view, one row, replaced as a whole on every publish (on a
-- standby: the primary's agent's view, compared with pgraft.this_node_id()).
create table pgraft.node_status (
  singleton boolean primary key default true check (singleton),
  node_id int not null,
  address text not null,
  port int not null,
  role text not null,                 -- leader | follower | candidate | pre_candidate | learner | removed | waiting
  term bigint not null,
  leader_id int,                      -- null when none known
  commit_index bigint not null,
  last_applied bigint not null,
  first_index bigint not null,
  last_index bigint not null,
  snapshot_index bigint not null,
  quorum_met boolean not null,
  elections_triggered bigint not null,
  failover_enabled boolean not null,
  cluster_id uuid,
  cluster_name text not null,
  storage_ok boolean not null,
  heartbeat_interval_ms int not null,
  election_timeout_ms int not null,
  no_leader_since timestamptz,        -- when this node last lost sight of a leader
  leader_since timestamptz,           -- when the current leader was first seen
  agent_pid int not null,
  agent_started_at timestamptz not null,
  agent_version text not null,
  stale_after_ms int not null,
  updated_at timestamptz not null default clock_timestamp(),
  -- manage_postgres: the primary record of the replicated state (null when none).
  primary_id int,                     -- the node whose PostgreSQL is the primary
  timeline bigint                     -- its timeline
);

-- Per member as this node sees it (the leader knows match/next of everyone).
-- On a standby these are the primary's agent's rows: the standby's own row is
-- the leader's view of it.
create table pgraft.member_status (
  node_id int primary key,
  address text not null,
  port int not null,
  state text not null,                -- leader | follower | candidate | learner | unreachable | unknown
  is_voter boolean not null,
  match_index bigint,
  next_index bigint,
  commit_index bigint,
  last_contact_at timestamptz,        -- leader: last message from it; follower: last heartbeat from the leader
  lag_entries bigint,
  lag_bytes bigint,
  -- manage_postgres: the member's PostgreSQL server (all null when the agent does not run it).
  pg_role text,                       -- primary | standby | starting | stopped | diverged | unknown
  pg_lsn pg_lsn,                      -- its WAL position
  wal_lag_bytes bigint                -- bytes of WAL it is behind the primary
);

-- Counters for pgraft_log_get_stats(), one row.
create table pgraft.log_stats (
  singleton boolean primary key default true check (singleton),
  entries_appended bigint not null,
  entries_applied bigint not null,
  proposals bigint not null,
  snapshots_taken bigint not null,
  snapshots_installed bigint not null,
  last_snapshot_index bigint not null,
  last_snapshot_at timestamptz,
  snapshot_threshold int not null,
  rpc_sent bigint not null,
  rpc_received bigint not null,
  rpc_errors bigint not null,
  rpc_rejected bigint not null,
  append_batches bigint not null,
  avg_append_batch numeric not null,
  persist_p50_ms numeric not null,
  persist_p99_ms numeric not null
);

-- The effective settings (file, defaults and cluster-wide values), published at start and on change.
create table pgraft.effective_config (
  name text primary key,
  setting text not null,
  unit text,
  scope text not null check (scope in ('node', 'cluster')),
  source text not null check (source in ('default', 'configuration file', 'cluster')),
  sourcefile text,
  sourceline int,
  value_type text not null,           -- integer | duration | boolean | string
  min_value numeric,
  max_value numeric,
  description text not null
);

create table pgraft.events (
  event_id bigserial primary key,
  event_timestamp timestamptz not null default clock_timestamp(),
  event_type text not null,
  term bigint,
  node_id int,
  detail text not null default ''
);
create index on pgraft.events (event_timestamp);

-- The input rules of lib/state/limits.ts (key and value sizes, the member
-- address pattern, the election/heartbeat ratio), published by the agent at
-- start so that the SQL functions check exactly what the agent checks.
create table pgraft.limits (
  name text primary key,
  value text not null
);
