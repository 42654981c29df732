-- Durable Raft state and the applied state machine of this node (lib/storage).
-- Written only by the agent's storage pool, with synchronous_commit = on.

-- currentTerm, votedFor, commitIndex: one row.
create table pgraft.hard_state (
  id boolean primary key default true check (id),
  term bigint not null check (term >= 0),
  vote int not null check (vote >= 0),
  commit bigint not null check (commit >= 0)
);
insert into pgraft.hard_state (id, term, vote, commit) values (true, 0, 0, 0);

-- The Raft log after the latest snapshot. type: 0 normal, 1 conf_change.
create table pgraft.log (
  idx bigint primary key check (idx >= 1),
  term bigint not null check (term >= 1),
  type smallint not null check (type in (0, 1)),
  data bytea not null
);

-- The latest snapshot (at most one row): the log up to idx is compacted into it.
create table pgraft.snapshot (
  id boolean primary key default true check (id),
  idx bigint not null check (idx >= 1),
  term bigint not null check (term >= 1),
  membership jsonb not null,
  data bytea not null
);

-- The applied state machine: how far it is applied, and the cluster's identity. One row.
create table pgraft.applied (
  id boolean primary key default true check (id),
  last_applied bigint not null check (last_applied >= 0),
  cluster_id text,
  cluster_name text
);
insert into pgraft.applied (id, last_applied) values (true, 0);

-- Members as the applied conf changes left them.
create table pgraft.members (
  node_id int primary key check (node_id >= 1),
  address text not null,
  port int not null,
  is_voter boolean not null,
  added_index bigint not null
);

-- Cluster-wide settings set through the log (name without the "pgraft." prefix).
create table pgraft.cluster_settings (
  name text primary key,
  value text not null,
  set_index bigint not null
);

-- The replicated key-value store: this node's applied copy.
create table pgraft.kv (
  key text primary key,
  value bytea not null,
  revision bigint not null
);
-- kvList walks keys in byte order whatever the database's collation.
create index kv_key_c on pgraft.kv (key collate "C");

-- ---------------------------------------------------------------------------
-- Every storage write is ONE statement (one of these functions, or one
-- statement in lib/storage/pg_storage.ts): atomic without an explicit
-- transaction, one round trip, and nothing for a dying connection to leave
-- half done on the client side.

-- Store a snapshot and compact the log up to it; never go backwards.
-- Returns false (and changes nothing) when the stored snapshot is not older.
create function pgraft.storage_save_snapshot(p_idx bigint, p_term bigint, p_membership jsonb,
                                             p_data bytea)
returns boolean
language plpgsql as $$
begin
  perform 1 from pgraft.snapshot s where s.idx >= p_idx for update;
  if found then
    return false;
  end if;
  insert into pgraft.snapshot (id, idx, term, membership, data)
  values (true, p_idx, p_term, p_membership, p_data)
  on conflict (id) do update
    set idx = excluded.idx, term = excluded.term, membership = excluded.membership,
        data = excluded.data;
  delete from pgraft.log l where l.idx <= p_idx;
  return true;
end
$$;

-- Append entries: every entry from p_idx[1] on is replaced.
create function pgraft.storage_append(p_idx bigint[], p_term bigint[], p_type smallint[],
                                      p_data bytea[])
returns void
language plpgsql as $$
begin
  if coalesce(array_length(p_idx, 1), 0) = 0 then
    return;
  end if;
  delete from pgraft.log l where l.idx >= p_idx[1];
  insert into pgraft.log (idx, term, type, data)
  select * from unnest(p_idx, p_term, p_type, p_data);
end
$$;

-- persist() with a snapshot from the leader: install it (replacing the applied
-- state with the state image in p_data, see lib/storage/commands.ts) unless it
-- is not newer than the stored one, then append, then the hard state.
create function pgraft.storage_persist_snapshot(
  p_snap_idx bigint, p_snap_term bigint, p_membership jsonb, p_snap_data bytea,
  p_idx bigint[], p_term bigint[], p_type smallint[], p_data bytea[],
  p_hs_term bigint, p_hs_vote int, p_hs_commit bigint)
returns void
language plpgsql as $$
declare
  image jsonb;
begin
  if pgraft.storage_save_snapshot(p_snap_idx, p_snap_term, p_membership, p_snap_data) then
    image := convert_from(p_snap_data, 'UTF8')::jsonb;
    delete from pgraft.members;
    delete from pgraft.cluster_settings;
    delete from pgraft.kv;
    insert into pgraft.members (node_id, address, port, is_voter, added_index)
    select (m->>'nodeId')::int, m->>'address', (m->>'port')::int, (m->>'isVoter')::boolean,
           (m->>'addedIndex')::bigint
      from jsonb_array_elements(image->'members') m;
    insert into pgraft.cluster_settings (name, value, set_index)
    select s->>'name', s->>'value', (s->>'setIndex')::bigint
      from jsonb_array_elements(image->'settings') s;
    insert into pgraft.kv (key, value, revision)
    select k->>0, decode(k->>1, 'base64'), (k->>2)::bigint
      from jsonb_array_elements(image->'kv') k;
    update pgraft.applied
       set last_applied = p_snap_idx, cluster_id = image->>'clusterId',
           cluster_name = image->>'clusterName';
  end if;
  perform pgraft.storage_append(p_idx, p_term, p_type, p_data);
  if p_hs_term is not null then
    insert into pgraft.hard_state (id, term, vote, commit)
    values (true, p_hs_term, p_hs_vote, p_hs_commit)
    on conflict (id) do update
      set term = excluded.term, vote = excluded.vote, commit = excluded.commit;
  end if;
end
$$;

-- apply(): committed entries in order, with last_applied, in one statement.
-- Entries at or below last_applied are skipped (r_applied = false). Ops:
-- 0 noop; 1 init_cluster (s1 id, s2 name); 2 conf_change (s1 kind, n1 node id,
-- s2 address and n2 port, null when the context has none); 3 set_config
-- (s1 name, s2 value); 4 kv_put (s1 key, val); 5 kv_delete (s1 key).
-- An index that is not last_applied + 1 raises PGR01 and changes nothing.
create function pgraft.storage_apply(p_idx bigint[], p_op smallint[], p_s1 text[], p_s2 text[],
                                     p_n1 bigint[], p_n2 int[], p_val bytea[])
returns table (r_idx bigint, r_applied boolean, r_existed boolean)
language plpgsql as $$
declare
  last bigint;
  i int;
begin
  -- Applying commits synchronously like every other storage write. (An
  -- asynchronous commit looked safe since the entries are durable in the log,
  -- but a crash of PostgreSQL alone then rolls last_applied back behind the
  -- agent's applied index: tests/e2e/kv_faults_test.ts caught stale reads and
  -- an apply gap.)
  select a.last_applied into strict last from pgraft.applied a for update;
  for i in 1 .. coalesce(array_length(p_idx, 1), 0) loop
    r_idx := p_idx[i];
    r_existed := null;
    if r_idx <= last then
      r_applied := false;
      return next;
      continue;
    end if;
    if r_idx <> last + 1 then
      raise exception 'apply: index %, expected %', r_idx, last + 1 using errcode = 'PGR01';
    end if;
    case p_op[i]
      when 0 then
        null;
      when 1 then
        update pgraft.applied set cluster_id = p_s1[i], cluster_name = p_s2[i];
      when 2 then
        if p_s1[i] = 'remove_node' then
          delete from pgraft.members m where m.node_id = p_n1[i];
        else
          insert into pgraft.members as m (node_id, address, port, is_voter, added_index)
          values (p_n1[i], coalesce(p_s2[i], ''), coalesce(p_n2[i], 0),
                  p_s1[i] = 'add_voter', r_idx)
          on conflict (node_id) do update
            set address = coalesce(p_s2[i], m.address), port = coalesce(p_n2[i], m.port),
                is_voter = excluded.is_voter;
        end if;
      when 3 then
        insert into pgraft.cluster_settings as s (name, value, set_index)
        values (p_s1[i], p_s2[i], r_idx)
        on conflict (name) do update set value = excluded.value, set_index = excluded.set_index;
      when 4 then
        r_existed := exists (select 1 from pgraft.kv k where k.key = p_s1[i]);
        insert into pgraft.kv as k (key, value, revision) values (p_s1[i], p_val[i], r_idx)
        on conflict (key) do update set value = excluded.value, revision = excluded.revision;
      when 5 then
        delete from pgraft.kv k where k.key = p_s1[i];
        r_existed := found;
      else
        raise exception 'apply: unknown op % at index %', p_op[i], r_idx using errcode = 'PGR01';
    end case;
    last := r_idx;
    r_applied := true;
    return next;
  end loop;
  update pgraft.applied set last_applied = last;
end
$$;
