-- The command functions: validate what can be validated here (with the rules
-- the agent published), then enqueue the command for the agent. On a
-- read-only standby (manage_postgres) each one first raises 25006 naming the
-- primary (pgraft.require_primary()), before anything is written.

create function public.pgraft_init() returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
begin
  perform pgraft.require_primary('pgraft_init()');  -- 25006 on a standby
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

create function public.pgraft_add_node(node_id int, address text, port int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  clash record;
begin
  perform pgraft.require_primary('pgraft_add_node()');  -- 25006 on a standby
  perform pgraft.await_commands();
  perform pgraft.check_node_id(node_id);
  s := pgraft.require_agent();
  perform pgraft.check_member_address(address, port);
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

create function public.pgraft_remove_node(node_id int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
  target pgraft.members;
begin
  perform pgraft.require_primary('pgraft_remove_node()');  -- 25006 on a standby
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
  perform pgraft.require_primary('pgraft_transfer_leadership()');  -- 25006 on a standby
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
  ratio int;
  suggestion text;
begin
  perform pgraft.require_primary('pgraft_set_config()');  -- 25006 on a standby
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
      when 'bytes' then
        number := pg_size_bytes(regexp_replace(btrim(value), '^([0-9.]+)\s*B$', '\1'));
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
                     when 'bytes' then format('Expected a size such as ''64MB'' between %s and %s bytes.',
                                              spec.min_value, spec.max_value)
                     else null end;
  end;
  s := pgraft.require_agent();
  ratio := pgraft.limit_value('election_heartbeat_ratio_min')::int;
  -- election_timeout must stay at least `ratio` times heartbeat_interval (the agent checks again).
  if short_name = 'election_timeout' and number < ratio * s.heartbeat_interval_ms then
    raise exception 'election_timeout (% ms) must be at least % times heartbeat_interval (% ms)',
        number, ratio, s.heartbeat_interval_ms
      using errcode = '22023',
            hint = 'Raise election_timeout, or lower heartbeat_interval first; 5x or more is recommended.';
  end if;
  if short_name = 'heartbeat_interval' and ratio * number > s.election_timeout_ms then
    raise exception 'heartbeat_interval (% ms) must be at most 1/% of election_timeout (% ms)',
        number, ratio, s.election_timeout_ms
      using errcode = '22023',
            hint = 'Lower heartbeat_interval, or raise election_timeout first; 5x or more is recommended.';
  end if;
  perform pgraft.require_leader(s);
  perform pgraft.enqueue('set_config', jsonb_build_object('name', short_name, 'value', value));
  return true;
end
$$;
