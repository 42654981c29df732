-- The replicated key-value store from SQL. Writes are commands like the others:
-- enqueued, executed by the agent through the Raft leader (forwarded from a
-- follower), and finished once applied on this node, so the next statement in
-- any session here sees them. Reads return this node's applied copy
-- (pgraft.kv) after waiting for the commands committed before them.

create function pgraft.check_kv_key(key text) returns void
language plpgsql immutable as $$
begin
  if key is null or key = '' then
    raise exception 'invalid key: it must be a non-empty string' using errcode = '22023',
      hint = 'Keys are non-empty text, e.g. ''config/feature-x''.';
  end if;
  if octet_length(key) > 1024 then
    raise exception 'key too long: % bytes (at most 1024)', octet_length(key) using errcode = '22001',
      hint = 'Use a shorter key; keep large data in the value.';
  end if;
end
$$;

create function public.pgraft_kv_put(key text, value text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  s pgraft.node_status;
begin
  perform pgraft.await_commands();
  perform pgraft.check_kv_key(key);
  if value is null then
    raise exception 'invalid value: NULL' using errcode = '22004',
      hint = 'Use pgraft_kv_delete(key) to remove a key.';
  end if;
  if octet_length(value) > 1048576 then
    raise exception 'value too large: % bytes (at most 1048576)', octet_length(value) using errcode = '22001',
      hint = 'Values are limited to 1 MiB; store large objects elsewhere and keep a reference here.';
  end if;
  s := pgraft.require_agent();
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
  perform pgraft.await_commands();
  perform pgraft.check_kv_key(key);
  s := pgraft.require_agent();
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

revoke all on function public.pgraft_kv_get(text) from public;
revoke all on function public.pgraft_kv_list(text) from public;
revoke all on function public.pgraft_kv_put(text, text) from public;
revoke all on function public.pgraft_kv_delete(text) from public;
grant execute on function public.pgraft_kv_get(text) to pgraft_monitor;
grant execute on function public.pgraft_kv_list(text) to pgraft_monitor;
grant execute on function public.pgraft_kv_put(text, text) to pgraft_admin;
grant execute on function public.pgraft_kv_delete(text) to pgraft_admin;
