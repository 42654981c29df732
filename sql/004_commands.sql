-- The command queue: the pgraft_* command functions insert a row and NOTIFY;
-- the agent executes it and records the outcome (lib/postgres/command_queue.ts).

create table pgraft.commands (
  command_id bigserial primary key,
  kind text not null check (kind in ('init', 'add_node', 'remove_node', 'transfer_leadership',
                                     'set_config', 'kv_put', 'kv_delete')),
  args jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'running', 'done', 'failed')),
  result jsonb,
  error text,
  requested_by name not null default session_user,
  backend_pid int not null default pg_backend_pid(),
  reported boolean not null default false,
  created_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
);
create index on pgraft.commands (command_id) where status in ('pending', 'running');
