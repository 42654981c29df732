-- The replicated state machine as this node's agent publishes it: each table
-- is a copy of the agent's in-memory state, kept in step in batches beside
-- consensus, and pgraft.published says which applied log index the copy
-- reflects. The agent is the only writer; consensus never waits for it.

create table pgraft.published (
  singleton boolean primary key default true check (singleton),
  applied_index bigint not null check (applied_index >= 0),
  cluster_id uuid,
  updated_at timestamptz not null default clock_timestamp()
);

-- Members: agent address for peers, and the PostgreSQL address when reported.
create table pgraft.members (
  node_id int primary key check (node_id >= 1),
  address text not null,
  port int not null,
  is_voter boolean not null,
  pg_host text,
  pg_port int
);

-- The replicated key-value store.
create table pgraft.kv (
  key text primary key,
  value bytea not null,
  revision bigint not null
);
-- pgraft_kv_list() walks keys in byte order whatever the database's collation.
create index kv_key_c on pgraft.kv (key collate "C");
