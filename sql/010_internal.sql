-- Internal helpers (schema pgraft, not granted to anyone).

-- The live status row, or no row when the agent is not refreshing it.
create function pgraft.live_status() returns setof pgraft.node_status
language sql stable as $$
  select * from pgraft.node_status s
   where s.updated_at > clock_timestamp() - make_interval(secs => s.stale_after_ms / 1000.0)
$$;

-- The node this server belongs to: pgraft.node_id of its postgresql.conf (the
-- agent's configuration file; PostgreSQL keeps it as a placeholder setting).
-- Null when not set (or not a node id): then this server is taken to be the
-- node that published pgraft.node_status. With manage_postgres, a standby's
-- pgraft.node_status is the primary's agent's (streaming replication), and the
-- functions that answer about "this node" compare with this id.
create function pgraft.this_node_id() returns int
language sql stable as $$
  select case when v ~ '^[0-9]{1,10}$' then
                case when v::bigint between 1 and 2147483647 then v::int end end
    from (select btrim(coalesce(current_setting('pgraft.node_id', true), '')) as v) setting
$$;

-- Whether the published status is this node's own (see pgraft.this_node_id()).
create function pgraft.is_own_status(s pgraft.node_status) returns boolean
language sql stable as $$
  select pgraft.this_node_id() is null or pgraft.this_node_id() = s.node_id
$$;

-- Lower synchronous_commit to 'local' for the current transaction (never
-- raise it: 'off' stays off), unless the transaction already wrote something:
-- its writes keep the durability the caller asked for.
create function pgraft.commit_locally() returns void
language plpgsql volatile as $$
begin
  if pg_current_xact_id_if_assigned() is null
     and current_setting('synchronous_commit') not in ('off', 'local') then
    perform set_config('synchronous_commit', 'local', true);
  end if;
end
$$;

-- Raise 25006 on a read-only standby (manage_postgres): commands run on the
-- primary, and the hint says which node that is and where its PostgreSQL
-- listens. Called first by every command function, before anything is written.
create function pgraft.require_primary(function_name text) returns void
language plpgsql stable as $$
declare
  s pgraft.node_status;
  target int;
  m pgraft.members;
  address text;
  fresh boolean;
begin
  if not pg_is_in_recovery() then
    return;
  end if;
  select * into s from pgraft.node_status;
  target := coalesce(s.primary_id, s.leader_id);
  fresh := exists (select 1 from pgraft.live_status());
  if target is not null then
    select * into m from pgraft.members mm where mm.node_id = target;
    address := case when m.pg_host is null or m.pg_port is null then null
                    when m.pg_host like '%:%' then format('[%s]:%s', m.pg_host, m.pg_port)
                    else format('%s:%s', m.pg_host, m.pg_port) end;
  end if;
  raise exception 'cannot run %: this server is a read-only standby', function_name
    using errcode = '25006',
          detail = case
                     when s.node_id is null then 'No pgraft status has been replicated here yet.'
                     when not fresh then format('The primary''s status was last refreshed at %s; '
                                                'a failover may be under way.', s.updated_at)
                     else 'pgraft commands are run on the primary; this server follows it by '
                          'streaming replication.' end,
          hint = case
                   when target is null then 'The primary is not known yet: see SELECT * FROM pgraft_get_nodes(); '
                                            'and run it on the node whose pg_role is primary.'
                   when address is null then format('Run it on the primary, node %s (address not known yet).',
                                                    target)
                   else format('Run it on the primary, node %s at %s.', target, address) end;
end
$$;

-- Wait (bounded) until every command committed before this call is finished;
-- warn about commands of this session that failed since they were last reported.
create function pgraft.await_commands(timeout_ms int default 2000) returns void
language plpgsql volatile as $$
declare
  horizon bigint;
  deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_ms / 1000.0);
  failed record;
  standby boolean;
begin
  -- On a read-only standby (manage_postgres) the queued commands are the
  -- primary's: its agent finishes them and the outcome arrives by streaming
  -- replication. Wait for them only while that agent is publishing, and write
  -- nothing here.
  standby := pg_is_in_recovery();
  if standby and not exists (select 1 from pgraft.live_status()) then
    return;
  end if;
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
  if standby or not exists (select 1 from pgraft.commands
                             where backend_pid = pg_backend_pid() and status = 'failed' and not reported) then
    return;
  end if;
  -- Marking them reported is a write in the caller's transaction: it must not
  -- wait for synchronous standbys (a monitoring query would hang while they are down).
  perform pgraft.commit_locally();
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
  -- The command row must never wait for synchronous standbys: with synchronous
  -- replication on and the standbys down, the commit would hang, and with it
  -- the very command that repairs the cluster (SELECT pgraft_remove_node(3)).
  -- The row is only a request to this node's agent; the command itself is made
  -- durable by the Raft log. (A transaction that wrote before calling keeps
  -- its own setting: pgraft.commit_locally().)
  perform pgraft.commit_locally();
  insert into pgraft.commands (kind, args) values (kind, args) returning command_id into id;
  perform pg_notify('pgraft_commands', id::text);
  return id;
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

-- A rule the agent published (sql/002_status.sql, pgraft.limits).
create function pgraft.limit_value(p_name text) returns text
language plpgsql stable as $$
declare
  v text;
begin
  select l.value into v from pgraft.limits l where l.name = p_name;
  if v is null then
    raise exception 'pgraft agent has not published its rules (pgraft.limits.%)', p_name
      using errcode = '55000', hint = 'Start the agent: pgraft run --config /path/to/postgresql.conf';
  end if;
  return v;
end
$$;

-- The key rules of lib/state/limits.ts (PostgreSQL text never holds NUL or a lone surrogate).
create function pgraft.check_kv_key(key text) returns void
language plpgsql stable as $$
declare
  key_max int := pgraft.limit_value('kv_key_bytes_max')::int;
begin
  if key is null or key = '' then
    raise exception 'invalid key: it must be a non-empty string' using errcode = '22023',
      hint = 'Keys are non-empty text, e.g. ''config/feature-x''.';
  end if;
  if octet_length(key) > key_max then
    raise exception 'key too long: % bytes (at most %)', octet_length(key), key_max using errcode = '22001',
      hint = 'Use a shorter key; keep large data in the value.';
  end if;
end
$$;

-- The value rule of lib/state/limits.ts.
create function pgraft.check_kv_value(value text) returns void
language plpgsql stable as $$
declare
  value_max int := pgraft.limit_value('kv_value_bytes_max')::int;
begin
  if value is null then
    raise exception 'invalid value: NULL' using errcode = '22004',
      hint = 'Use pgraft_kv_delete(key) to remove a key.';
  end if;
  if octet_length(value) > value_max then
    raise exception 'value too large: % bytes (at most %)', octet_length(value), value_max using errcode = '22001',
      hint = 'Values are limited to 1 MiB; store large objects elsewhere and keep a reference here.';
  end if;
end
$$;

-- The member address rule of lib/state/limits.ts (memberAddressProblem).
create function pgraft.check_member_address(address text, port int) returns void
language plpgsql stable as $$
declare
  chars_max int := pgraft.limit_value('member_address_chars_max')::int;
  port_max int := pgraft.limit_value('member_port_max')::int;
begin
  if address is null or btrim(address) = '' then
    raise exception 'invalid address: it must be a host name or IP address' using errcode = '22023',
      hint = 'Give the address other agents use to reach this node, e.g. ''10.0.0.12''.';
  end if;
  if length(address) > chars_max or address !~ pgraft.limit_value('member_address_pattern') then
    raise exception 'invalid address: "%"', left(address, 64)
      using errcode = '22023',
            hint = format('Give a host name or an IP address, without a scheme or port (at most %s characters).',
                          chars_max);
  end if;
  if port is null or port < 1 or port > port_max then
    raise exception 'invalid port: % (expected 1..%)', coalesce(port::text, 'NULL'), port_max
      using errcode = '22023', hint = 'This is the pgraft.port of the node''s agent.';
  end if;
end
$$;
