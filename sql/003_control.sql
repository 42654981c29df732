-- pgraft control surface: the agent's live status, the command queue, events,
-- and the pgraft_* functions operators call from psql.
--
-- Reads come from small status tables the agent refreshes on every change and
-- at least every heartbeat; a row older than stale_after_ms is not presented as
-- current (pgraft_is_leader() and pgraft_quorum_met() answer false, states read
-- 'unknown'). Writes validate what they can, then enqueue a command in
-- pgraft.commands and NOTIFY the agent; every function first waits (bounded)
-- until the commands committed before it started are finished.

-- Roles: command functions for superusers and pgraft_admin, reads for pgraft_monitor.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'pgraft_monitor') then
    create role pgraft_monitor nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'pgraft_admin') then
    create role pgraft_admin nologin;
  end if;
  if not pg_has_role('pgraft_admin', 'pgraft_monitor', 'member') then
    grant pgraft_monitor to pgraft_admin;
  end if;
end
$$;

-- The agent's own view, one row, replaced as a whole on every publish.
create unlogged table pgraft.node_status (
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
  updated_at timestamptz not null default clock_timestamp()
);

-- Per member as this node sees it (the leader knows match/next of everyone).
create unlogged table pgraft.member_status (
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
  lag_bytes bigint
);

-- Counters for pgraft_log_get_stats(), one row.
create unlogged table pgraft.log_stats (
  singleton boolean primary key default true check (singleton),
  entries_appended bigint not null,
  entries_committed bigint not null,
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

-- ---------------------------------------------------------------------------
-- Internal helpers (schema pgraft, not granted to anyone).

-- The live status row, or no row when the agent is not refreshing it.
create function pgraft.live_status() returns setof pgraft.node_status
language sql stable as $$
  select * from pgraft.node_status s
   where s.updated_at > clock_timestamp() - make_interval(secs => s.stale_after_ms / 1000.0)
$$;

-- Wait (bounded) until every command committed before this call is finished;
-- warn about commands of this session that failed since they were last reported.
create function pgraft.await_commands(timeout_ms int default 2000) returns void
language plpgsql volatile as $$
declare
  horizon bigint;
  deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_ms / 1000.0);
  failed record;
begin
  select max(command_id) into horizon from pgraft.commands where status in ('pending', 'running');
  if horizon is not null then
    loop
      exit when not exists (select 1 from pgraft.commands
                             where command_id <= horizon and status in ('pending', 'running'));
      if clock_timestamp() > deadline then
        raise warning 'pgraft: commands are still running after % ms', timeout_ms
          using hint = 'See SELECT * FROM pgraft.commands WHERE status in (''pending'', ''running'') '
                       'and SELECT * FROM pgraft_get_events(); the agent finishes them in the background.';
        exit;
      end if;
      perform pg_sleep(0.002);
    end loop;
  end if;
  for failed in
    update pgraft.commands set reported = true
     where backend_pid = pg_backend_pid() and status = 'failed' and not reported
     returning command_id, kind, error
  loop
    raise warning 'pgraft: command % (%) failed: %', failed.command_id, failed.kind, failed.error;
  end loop;
end
$$;

-- The live status or an error saying the agent is not running.
create function pgraft.require_agent() returns pgraft.node_status
language plpgsql volatile as $$
declare
  s pgraft.node_status;
  last_seen timestamptz;
  deadline timestamptz := clock_timestamp() + interval '2 seconds';
begin
  -- A missing or failing status is often transient (a terminated session, a
  -- restarting server): give the agent up to 2 s to come back before reporting.
  loop
    select * into s from pgraft.live_status();
    exit when found and s.storage_ok;
    exit when clock_timestamp() > deadline;
    perform pg_sleep(0.005);
  end loop;
  if s.node_id is null then
    select updated_at into last_seen from pgraft.node_status;
    raise exception 'pgraft agent is not running on this node'
      using errcode = '55000',
            detail = case when last_seen is null then 'The agent has never published its status here.'
                          else format('Its status was last refreshed at %s.', last_seen) end,
            hint = 'Start it with: pgraft run --config /path/to/postgresql.conf';
  end if;
  if not s.storage_ok then
    raise exception 'pgraft agent on node % cannot write to its PostgreSQL', s.node_id
      using errcode = '55000', hint = 'Check the agent''s log for storage errors.';
  end if;
  return s;
end
$$;

-- Errors when no leader is known. An election in progress is waited for (up to
-- two election timeouts, at most 5 s) so that a statement issued during a
-- failover succeeds once the new leader is known.
create function pgraft.require_leader(s pgraft.node_status) returns void
language plpgsql volatile as $$
declare
  deadline timestamptz := clock_timestamp()
    + make_interval(secs => least(5.0, 2 * coalesce(s.election_timeout_ms, 1000) / 1000.0));
begin
  if s.cluster_id is null then
    raise exception 'node % is not part of a cluster yet', s.node_id
      using errcode = '55000',
            hint = 'Run SELECT pgraft_init(); on the first node, or SELECT pgraft_add_node(...) on the leader '
                   'to add this one.';
  end if;
  while s.leader_id is null and clock_timestamp() < deadline loop
    perform pg_sleep(0.005);
    select * into s from pgraft.live_status();
    exit when not found;
  end loop;
  if s.leader_id is null then
    raise exception 'no pgraft leader is known (since %)',
        coalesce(to_char(s.no_leader_since, 'YYYY-MM-DD HH24:MI:SS.MS TZ'), 'agent start')
      using errcode = '55000',
            hint = 'Check SELECT * FROM pgraft_get_nodes(); a majority of voters must be running and '
                   'reachable, and SELECT * FROM pgraft_get_events(); for elections.';
  end if;
end
$$;

-- The agent's writes to the control schema: each one is ONE statement (a call
-- of one of these functions), atomic without a client-side transaction, so a
-- session terminated mid-write cannot leave the driver inside one.

create function pgraft.publish_status(rows jsonb) returns void
language plpgsql volatile as $$
begin
  -- Two publishers at once (a command's outcome and the periodic refresh) take turns.
  perform pg_advisory_xact_lock(7236841172050240);
  delete from pgraft.node_status;
  insert into pgraft.node_status
  select * from jsonb_populate_record(null::pgraft.node_status,
                                      rows->'node' || jsonb_build_object('updated_at', clock_timestamp()));
  delete from pgraft.member_status;
  insert into pgraft.member_status
  select * from jsonb_populate_recordset(null::pgraft.member_status, rows->'members');
  delete from pgraft.log_stats;
  insert into pgraft.log_stats select * from jsonb_populate_record(null::pgraft.log_stats, rows->'stats');
end
$$;

-- Record a command's outcome and, in the same statement, the status that goes with it.
create function pgraft.finish_command(p_command_id bigint, p_ok boolean, p_result jsonb, p_error text,
                                      p_status jsonb)
returns void
language plpgsql volatile as $$
begin
  if p_status is not null then
    perform pgraft.publish_status(p_status);
  end if;
  update pgraft.commands
     set status = case when p_ok then 'done' else 'failed' end,
         result = case when p_ok then p_result end,
         error = case when p_ok then null else p_error end,
         finished_at = clock_timestamp()
   where command_id = p_command_id;
end
$$;

create function pgraft.publish_config(rows jsonb) returns void
language plpgsql volatile as $$
begin
  delete from pgraft.effective_config;
  insert into pgraft.effective_config
  select * from jsonb_populate_recordset(null::pgraft.effective_config, rows);
end
$$;

create function pgraft.insert_events(rows jsonb, kept_max int) returns void
language plpgsql volatile as $$
begin
  insert into pgraft.events (event_timestamp, event_type, term, node_id, detail)
  select x.event_timestamp, x.event_type, x.term, x.node_id, coalesce(x.detail, '')
    from jsonb_to_recordset(rows)
      as x(event_timestamp timestamptz, event_type text, term bigint, node_id int, detail text);
  delete from pgraft.events where event_id <= (select max(event_id) - kept_max from pgraft.events);
end
$$;

create function pgraft.edit_distance(a text, b text) returns int
language plpgsql immutable strict as $$
declare
  previous int[];
  current int[];
  i int;
  j int;
begin
  previous := array(select generate_series(0, length(b)));
  for i in 1 .. length(a) loop
    current := array[i];
    for j in 1 .. length(b) loop
      current := current || least(previous[j + 1] + 1, current[j] + 1,
                                  previous[j] + case when substr(a, i, 1) = substr(b, j, 1) then 0 else 1 end);
    end loop;
    previous := current;
  end loop;
  return previous[length(b) + 1];
end
$$;

create function pgraft.enqueue(kind text, args jsonb) returns bigint
language plpgsql volatile as $$
declare
  id bigint;
begin
  insert into pgraft.commands (kind, args) values (kind, args) returning command_id into id;
  perform pg_notify('pgraft_commands', id::text);
  return id;
end
$$;

-- ---------------------------------------------------------------------------
-- Read functions.

create function public.pgraft_is_leader() returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return coalesce((select role = 'leader' from pgraft.live_status()), false);
end
$$;

create function public.pgraft_quorum_met() returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return coalesce((select quorum_met from pgraft.live_status()), false);
end
$$;

create function public.pgraft_get_term() returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  -- The term only grows; the last published one stays true as a lower bound.
  return (select term from pgraft.node_status);
end
$$;

create function public.pgraft_get_leader() returns int
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return (select leader_id from pgraft.live_status());
end
$$;

create function public.pgraft_get_nodes()
returns table (node_id int, address text, port int, state text, is_voter boolean,
               match_index bigint, next_index bigint, commit_index bigint,
               last_heartbeat_ms bigint, replication_lag_bytes bigint, lag_entries bigint)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  live boolean;
begin
  perform pgraft.await_commands();
  live := exists (select 1 from pgraft.live_status());
  return query
    select m.node_id, m.address, m.port,
           case when live then m.state else 'unknown' end,
           m.is_voter, m.match_index, m.next_index, m.commit_index,
           case when live and m.last_contact_at is not null
                then (extract(epoch from clock_timestamp() - m.last_contact_at) * 1000)::bigint end,
           m.lag_bytes, m.lag_entries
      from pgraft.member_status m
     order by m.node_id;
end
$$;

create function public.pgraft_get_cluster_status()
returns table (node_id int, state text, leader_id int, current_term bigint, commit_index bigint,
               last_applied bigint, quorum_met boolean, elections_triggered bigint,
               failover_enabled boolean, cluster_name text, cluster_id uuid, num_nodes int,
               num_voters int, first_index bigint, last_index bigint, snapshot_index bigint,
               agent_running boolean, storage_ok boolean, status_age_ms bigint)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return query
    select s.node_id,
           case when l.node_id is null then 'unknown' else s.role end,
           l.leader_id, s.term, s.commit_index, s.last_applied,
           coalesce(l.quorum_met, false), s.elections_triggered, s.failover_enabled,
           s.cluster_name, s.cluster_id,
           (select count(*)::int from pgraft.member_status),
           (select count(*)::int from pgraft.member_status m where m.is_voter),
           s.first_index, s.last_index, s.snapshot_index,
           l.node_id is not null, s.storage_ok,
           (extract(epoch from clock_timestamp() - s.updated_at) * 1000)::bigint
      from pgraft.node_status s
      left join pgraft.live_status() l on true;
end
$$;

create function public.pgraft_log_get_replication_status()
returns table (node_id int, match_index bigint, next_index bigint, commit_index bigint,
               lag_entries bigint, state text)
language sql volatile security definer set search_path = pg_catalog, pgraft as $$
  select n.node_id, n.match_index, n.next_index, n.commit_index, n.lag_entries, n.state
    from public.pgraft_get_nodes() n
$$;

create function public.pgraft_log_get_stats()
returns table (log_first_index bigint, log_last_index bigint, commit_index bigint,
               last_applied bigint, entries_appended bigint, entries_committed bigint,
               entries_applied bigint, proposals bigint, append_batches bigint,
               avg_append_batch numeric, snapshots_taken bigint, snapshots_installed bigint,
               last_snapshot_index bigint, last_snapshot_at timestamptz, snapshot_threshold int,
               entries_since_snapshot bigint, rpc_sent bigint, rpc_received bigint,
               rpc_errors bigint, rpc_rejected bigint, persist_p50_ms numeric,
               persist_p99_ms numeric)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return query
    select s.first_index, s.last_index, s.commit_index, s.last_applied,
           t.entries_appended, t.entries_committed, t.entries_applied, t.proposals,
           t.append_batches, t.avg_append_batch, t.snapshots_taken, t.snapshots_installed,
           t.last_snapshot_index, t.last_snapshot_at, t.snapshot_threshold,
           s.last_applied - t.last_snapshot_index, t.rpc_sent, t.rpc_received, t.rpc_errors,
           t.rpc_rejected, t.persist_p50_ms, t.persist_p99_ms
      from pgraft.node_status s cross join pgraft.log_stats t;
end
$$;

create function public.pgraft_get_events()
returns table (event_timestamp timestamptz, event_type text, term bigint, node_id int, detail text)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return query
    select e.event_timestamp, e.event_type, e.term, e.node_id, e.detail
      from pgraft.events e
     order by e.event_id;
end
$$;

create function public.pgraft_get_config()
returns table (name text, setting text, unit text, source text, scope text,
               sourcefile text, sourceline int)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return query
    select c.name, c.setting, c.unit, c.source, c.scope, c.sourcefile, c.sourceline
      from pgraft.effective_config c
     order by c.name;
end
$$;

-- ---------------------------------------------------------------------------
-- Command functions.

create function public.pgraft_init() returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
begin
  perform pgraft.await_commands();
  s := pgraft.require_agent();
  if s.cluster_id is not null or s.role in ('leader', 'follower', 'learner') then
    raise exception 'node % is already part of cluster %', s.node_id, coalesce(s.cluster_id::text, '(joining)')
      using errcode = '55000',
            hint = 'pgraft_init() bootstraps a new cluster once; add more nodes with pgraft_add_node() on the leader.';
  end if;
  if exists (select 1 from pgraft.commands where kind = 'init' and status in ('pending', 'running')) then
    raise exception 'pgraft_init() is already running on node %', s.node_id
      using errcode = '55000', hint = 'Wait for it to finish, then SELECT pgraft_is_leader();';
  end if;
  perform pgraft.enqueue('init', '{}');
  return true;
end
$$;

create function pgraft.check_node_id(node_id int) returns void
language plpgsql immutable as $$
begin
  if node_id is null or node_id < 1 then
    raise exception 'invalid node_id: % (expected 1..2147483647)', coalesce(node_id::text, 'NULL')
      using errcode = '22023', hint = 'Node ids are positive integers, the pgraft.node_id of each agent.';
  end if;
end
$$;

create function public.pgraft_add_node(node_id int, address text, port int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  clash record;
begin
  perform pgraft.await_commands();
  perform pgraft.check_node_id(node_id);
  if address is null or btrim(address) = '' then
    raise exception 'invalid address: it must be a host name or IP address' using errcode = '22023',
      hint = 'Give the address other agents use to reach this node, e.g. ''10.0.0.12''.';
  end if;
  if address !~ '^[A-Za-z0-9._:\-\[\]]+$' then
    raise exception 'invalid address: "%"', address
      using errcode = '22023', hint = 'Give a host name or an IP address, without a scheme or port.';
  end if;
  if port is null or port < 1 or port > 65535 then
    raise exception 'invalid port: % (expected 1..65535)', coalesce(port::text, 'NULL')
      using errcode = '22023', hint = 'This is the pgraft.port of the new node''s agent.';
  end if;
  s := pgraft.require_agent();
  perform pgraft.require_leader(s);
  select * into clash from pgraft.members m where m.node_id = pgraft_add_node.node_id;
  if found then
    raise exception 'node % is already a member (%:%)', node_id, clash.address, clash.port
      using errcode = '23505', hint = 'Remove it first with pgraft_remove_node(), or pick another node id.';
  end if;
  select * into clash from pgraft.members m
   where m.address = pgraft_add_node.address and m.port = pgraft_add_node.port;
  if found then
    raise exception 'address %:% is already used by node %', address, port, clash.node_id
      using errcode = '23505',
            hint = 'Each agent needs its own address and port (pgraft.address, pgraft.port in its postgresql.conf).';
  end if;
  perform pgraft.enqueue('add_node', jsonb_build_object('node_id', node_id, 'address', address, 'port', port));
  return true;
end
$$;

-- The member a command names, once a leader is known; errors for a bad or unknown id.
create function pgraft.require_member(s pgraft.node_status, node_id int) returns pgraft.members
language plpgsql volatile as $$
declare
  target pgraft.members;
begin
  perform pgraft.check_node_id(node_id);
  perform pgraft.require_leader(s);
  select * into target from pgraft.members m where m.node_id = require_member.node_id;
  if not found then
    raise exception 'node % is not a member of the cluster', node_id
      using errcode = '42704', hint = 'See SELECT node_id FROM pgraft_get_nodes();';
  end if;
  return target;
end
$$;

create function public.pgraft_remove_node(node_id int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  target pgraft.members;
begin
  perform pgraft.await_commands();
  s := pgraft.require_agent();
  target := pgraft.require_member(s, node_id);
  if target.is_voter and (select count(*) from pgraft.members where is_voter) = 1 then
    raise exception 'cannot remove node %: it is the last voter', node_id
      using errcode = '55000', hint = 'A cluster needs at least one voter; add and promote another node first.';
  end if;
  perform pgraft.enqueue('remove_node', jsonb_build_object('node_id', node_id));
  return true;
end
$$;

create function public.pgraft_transfer_leadership(node_id int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  target pgraft.members;
begin
  perform pgraft.await_commands();
  s := pgraft.require_agent();
  target := pgraft.require_member(s, node_id);
  if not target.is_voter then
    raise exception 'node % is a learner and cannot lead', node_id
      using errcode = '55000', hint = 'It is promoted to voter once it has caught up with the log.';
  end if;
  if s.leader_id = node_id then
    return true;  -- already the leader: nothing to do
  end if;
  perform pgraft.enqueue('transfer_leadership', jsonb_build_object('node_id', node_id));
  return true;
end
$$;

create function public.pgraft_set_config(name text, value text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  spec pgraft.effective_config;
  short_name text := regexp_replace(lower(btrim(name)), '^pgraft\.', '');
  number numeric;
  suggestion text;
begin
  perform pgraft.await_commands();
  if value is null then
    raise exception 'invalid value for %: NULL', short_name using errcode = '22023',
      hint = 'Pass the value as text, e.g. pgraft_set_config(''election_timeout'', ''1000ms'').';
  end if;
  select * into spec from pgraft.effective_config c where c.name = short_name;
  if not found then
    select c.name into suggestion from pgraft.effective_config c
     where pgraft.edit_distance(c.name, short_name) <= 3
     order by pgraft.edit_distance(c.name, short_name) limit 1;
    raise exception 'unrecognized pgraft setting "%"', name
      using errcode = '42704',
            hint = coalesce(format('Did you mean "%s"? ', suggestion), '') ||
                   'See SELECT name, scope FROM pgraft_get_config();';
  end if;
  if spec.scope = 'node' then
    raise exception 'setting "%" is node-scoped and cannot be set cluster-wide', short_name
      using errcode = '55P02',
            hint = format('Set pgraft.%s in this node''s postgresql.conf and restart its agent.', short_name);
  end if;
  -- Values are checked with PostgreSQL's own input rules here; the agent checks them again.
  begin
    case spec.value_type
      when 'boolean' then perform value::boolean;
      when 'integer' then
        number := value::bigint;
        if number < spec.min_value or number > spec.max_value then
          raise exception using errcode = '22003';
        end if;
      when 'duration' then
        number := case when btrim(value) ~ '^[0-9]+$' then btrim(value)::numeric
                       else extract(epoch from btrim(value)::interval) * 1000 end;
        if number < spec.min_value or number > spec.max_value then
          raise exception using errcode = '22003';
        end if;
      else null;
    end case;
  exception when others then
    raise exception 'invalid value for %: "%"', short_name, value
      using errcode = '22023',
            hint = case spec.value_type
                     when 'boolean' then 'Expected on/off, true/false, yes/no or 1/0.'
                     when 'duration' then format('Expected a duration such as ''100ms'' between %s and %s ms.',
                                                 spec.min_value, spec.max_value)
                     when 'integer' then format('Expected an integer between %s and %s.',
                                                spec.min_value, spec.max_value)
                     else null end;
  end;
  s := pgraft.require_agent();
  -- election_timeout must stay at least twice heartbeat_interval (the agent checks again).
  if short_name = 'election_timeout' and number < 2 * s.heartbeat_interval_ms then
    raise exception 'election_timeout (% ms) must be at least twice heartbeat_interval (% ms)',
        number, s.heartbeat_interval_ms
      using errcode = '22023',
            hint = 'Raise election_timeout, or lower heartbeat_interval first; 5x or more is recommended.';
  end if;
  if short_name = 'heartbeat_interval' and 2 * number > s.election_timeout_ms then
    raise exception 'heartbeat_interval (% ms) must be at most half of election_timeout (% ms)',
        number, s.election_timeout_ms
      using errcode = '22023',
            hint = 'Lower heartbeat_interval, or raise election_timeout first; 5x or more is recommended.';
  end if;
  perform pgraft.require_leader(s);
  perform pgraft.enqueue('set_config', jsonb_build_object('name', short_name, 'value', value));
  return true;
end
$$;

-- ---------------------------------------------------------------------------
-- Privileges.

do $$
declare
  f text;
begin
  foreach f in array array[
    'pgraft_is_leader()', 'pgraft_quorum_met()', 'pgraft_get_term()', 'pgraft_get_leader()',
    'pgraft_get_nodes()', 'pgraft_get_cluster_status()', 'pgraft_log_get_replication_status()',
    'pgraft_log_get_stats()', 'pgraft_get_events()', 'pgraft_get_config()']
  loop
    execute format('revoke all on function public.%s from public', f);
    execute format('grant execute on function public.%s to pgraft_monitor', f);
  end loop;
  foreach f in array array[
    'pgraft_init()', 'pgraft_add_node(int, text, int)', 'pgraft_remove_node(int)',
    'pgraft_transfer_leadership(int)', 'pgraft_set_config(text, text)']
  loop
    execute format('revoke all on function public.%s from public', f);
    execute format('grant execute on function public.%s to pgraft_admin', f);
  end loop;
end
$$;
