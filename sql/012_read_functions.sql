-- The read functions: what this node's agent published, never presented as
-- current once the agent stops refreshing it (pgraft.live_status()).
--
-- With manage_postgres, a standby holds what the primary's agent published
-- (streaming replication): the functions answer for the node the server
-- belongs to (pgraft.this_node_id()) — its state is the leader's view of it in
-- pgraft.member_status, it is the leader only if the published status names it
-- — and everything else as published. On a standby a stale status also means
-- the primary (or its agent) is gone: the same staleness rule covers it.

create function public.pgraft_is_leader() returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
begin
  perform pgraft.await_commands();
  return coalesce((select case when pgraft.is_own_status(l) then l.role = 'leader'
                               else l.leader_id = pgraft.this_node_id() end
                      from pgraft.live_status() l), false);
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
               last_heartbeat_ms bigint, replication_lag_bytes bigint, lag_entries bigint,
               pg_role text, pg_lsn pg_lsn, wal_lag_bytes bigint)
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
           m.lag_bytes, m.lag_entries,
           -- a stale role is not presented as current (a dead primary is no primary)
           case when live or m.pg_role is null then m.pg_role else 'unknown' end,
           m.pg_lsn, m.wal_lag_bytes
      from pgraft.member_status m
     order by m.node_id;
end
$$;

create function public.pgraft_get_cluster_status()
returns table (node_id int, state text, leader_id int, current_term bigint, commit_index bigint,
               last_applied bigint, quorum_met boolean, elections_triggered bigint,
               failover_enabled boolean, cluster_name text, cluster_id uuid, num_nodes int,
               num_voters int, first_index bigint, last_index bigint, snapshot_index bigint,
               agent_running boolean, storage_ok boolean, status_age_ms bigint,
               primary_id int, timeline bigint)
language plpgsql volatile security definer set search_path = pg_catalog, pgraft as $$
declare
  me int := pgraft.this_node_id();
begin
  perform pgraft.await_commands();
  return query
    select case when pgraft.is_own_status(s) then s.node_id else me end,
           case when l.node_id is null then 'unknown'
                when pgraft.is_own_status(s) then s.role
                -- another node's status (a standby): the leader's view of this node
                else coalesce((select m.state from pgraft.member_status m where m.node_id = me),
                              'unknown') end,
           l.leader_id, s.term, s.commit_index, s.last_applied,
           coalesce(l.quorum_met, false), s.elections_triggered, s.failover_enabled,
           s.cluster_name, s.cluster_id,
           (select count(*)::int from pgraft.member_status),
           (select count(*)::int from pgraft.member_status m where m.is_voter),
           s.first_index, s.last_index, s.snapshot_index,
           l.node_id is not null, s.storage_ok,
           (extract(epoch from clock_timestamp() - s.updated_at) * 1000)::bigint,
           s.primary_id, s.timeline
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
               last_applied bigint, entries_appended bigint,
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
           t.entries_appended, t.entries_applied, t.proposals,
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
