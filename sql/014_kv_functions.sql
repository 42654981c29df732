-- The replicated key-value store from SQL. Writes are commands like the others:
-- enqueued, executed by the agent through the Raft leader (forwarded from a
-- follower), and finished once applied on this node, so the next statement in
-- any session here sees them. Reads return this node's published copy
-- (pgraft.kv) after waiting for the commands committed before them.

create function public.pgraft_kv_put(key text, value text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
begin
  perform pgraft.require_primary('pgraft_kv_put()');  -- 25006 on a standby
  perform pgraft.await_commands();
  s := pgraft.require_agent();
  perform pgraft.check_kv_key(key);
  perform pgraft.check_kv_value(value);
  perform pgraft.require_leader(s);
  perform pgraft.enqueue('kv_put', jsonb_build_object('key', key, 'value', value));
  return true;
end
$$;

create function public.pgraft_kv_delete(key text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
begin
  perform pgraft.require_primary('pgraft_kv_delete()');  -- 25006 on a standby
  perform pgraft.await_commands();
  s := pgraft.require_agent();
  perform pgraft.check_kv_key(key);
  perform pgraft.require_leader(s);
  perform pgraft.enqueue('kv_delete', jsonb_build_object('key', key));
  return true;
end
$$;

create function public.pgraft_kv_get(key text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  perform pgraft.check_kv_key(key);
  return (select convert_from(k.value, 'UTF8') from pgraft.kv k where k.key = pgraft_kv_get.key);
end
$$;

create function public.pgraft_kv_list(prefix text default '')
returns table (key text, value text, revision bigint)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return query
    select k.key, convert_from(k.value, 'UTF8'), k.revision
      from pgraft.kv k
     where left(k.key, length(coalesce(prefix, ''))) = coalesce(prefix, '')
     order by k.key collate "C";
end
$$;
