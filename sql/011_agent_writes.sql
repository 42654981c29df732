-- The agent's writes to the control schema: each one is ONE statement (a call
-- of one of these functions), atomic without a client-side transaction, so a
-- session terminated mid-write cannot leave the driver inside one.

-- The published rows are derived data the agent can write again: they commit
-- without waiting for the WAL flush (synchronous_commit = off for the
-- transaction), so publishing never competes with the Raft log's fdatasync.
-- After a crash of PostgreSQL the copy may roll back a little, stamp and all
-- (pgraft.published), and the agent publishes again from the stamp. What users
-- wait for, a command's outcome (finish_command), commits with its WAL flushed
-- (and everything before it), but never waits for synchronous standbys
-- (synchronous_commit = local): with synchronous replication on and the
-- standbys down, the outcome of the command that repairs the cluster
-- (pgraft_remove_node()) must not hang behind them.
--
-- With manage_postgres these tables reach the standbys by streaming
-- replication, so they are all logged (sql/002_status.sql).

create function pgraft.publish_status(rows jsonb) returns void
language plpgsql volatile as $$
begin
  perform set_config('synchronous_commit', 'off', true);
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

-- The agent takes a queued command (it never waits for synchronous standbys either).
create function pgraft.start_command(p_command_id bigint) returns void
language plpgsql volatile as $$
begin
  perform set_config('synchronous_commit', 'local', true);
  update pgraft.commands set status = 'running' where command_id = p_command_id and status = 'pending';
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
  -- After publish_status (which turns it off): flushed locally, not waiting for standbys.
  perform set_config('synchronous_commit', 'local', true);
  update pgraft.commands
     set status = case when p_ok then 'done' else 'failed' end,
         result = case when p_ok then p_result end,
         error = case when p_ok then null else p_error end,
         finished_at = clock_timestamp()
   where command_id = p_command_id;
end
$$;

create function pgraft.publish_config(rows jsonb, limits jsonb) returns void
language plpgsql volatile as $$
begin
  perform set_config('synchronous_commit', 'off', true);
  delete from pgraft.effective_config;
  insert into pgraft.effective_config
  select * from jsonb_populate_recordset(null::pgraft.effective_config, rows);
  delete from pgraft.limits;
  insert into pgraft.limits (name, value) select key, value from jsonb_each_text(limits);
end
$$;

create function pgraft.insert_events(rows jsonb, kept_max int) returns void
language plpgsql volatile as $$
begin
  perform set_config('synchronous_commit', 'off', true);
  insert into pgraft.events (event_timestamp, event_type, term, node_id, detail)
  select x.event_timestamp, x.event_type, x.term, x.node_id, coalesce(x.detail, '')
    from jsonb_to_recordset(rows)
      as x(event_timestamp timestamptz, event_type text, term bigint, node_id int, detail text);
  delete from pgraft.events where event_id <= (select max(event_id) - kept_max from pgraft.events);
end
$$;

-- Bring the published copy of the state machine from applied index p_from to
-- p_index: upsert and delete keys (values hex-encoded), replace the members
-- when given, and stamp the copy. With p_reset the copy is emptied first (a
-- full resync starts with it; the following calls add the rest of the keys).
create function pgraft.publish_state(p_from bigint, p_index bigint, p_cluster_id uuid,
                                     p_reset boolean, p_puts jsonb, p_deletes jsonb,
                                     p_members jsonb)
returns void
language plpgsql volatile as $$
declare
  stamp bigint;
begin
  perform set_config('synchronous_commit', 'off', true);
  perform pg_advisory_xact_lock(7236841172050241);
  select applied_index into stamp from pgraft.published;
  -- The changes go on top of the copy at p_from; a copy elsewhere (rolled back
  -- by a crash of PostgreSQL, or written by another process) is refused, and
  -- the agent reads the stamp again.
  if not p_reset and coalesce(stamp, 0) is distinct from p_from then
    raise exception 'the published copy is at index %, not %', coalesce(stamp, 0), p_from
      using errcode = 'PGR02';
  end if;
  if p_reset then
    delete from pgraft.kv;
  end if;
  if p_deletes is not null then
    delete from pgraft.kv k where k.key in (select jsonb_array_elements_text(p_deletes));
  end if;
  if p_puts is not null then
    insert into pgraft.kv as k (key, value, revision)
    select x.k, decode(x.v, 'hex'), x.r from jsonb_to_recordset(p_puts) as x(k text, v text, r bigint)
    on conflict (key) do update set value = excluded.value, revision = excluded.revision;
  end if;
  if p_members is not null then
    delete from pgraft.members;
    insert into pgraft.members (node_id, address, port, is_voter, pg_host, pg_port)
    select x.node_id, x.address, x.port, x.is_voter, x.pg_host, x.pg_port
      from jsonb_to_recordset(p_members)
        as x(node_id int, address text, port int, is_voter boolean, pg_host text, pg_port int);
  end if;
  insert into pgraft.published (singleton, applied_index, cluster_id, updated_at)
  values (true, p_index, p_cluster_id, clock_timestamp())
  on conflict (singleton) do update
    set applied_index = excluded.applied_index, cluster_id = excluded.cluster_id,
        updated_at = excluded.updated_at;
end
$$;
