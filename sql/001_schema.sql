-- pgraft control schema. Tables live in schema pgraft; the pgraft_* functions
-- live in public so that the unqualified calls of the user's documents work.
-- Tables are created by numbered files 001-009, functions by 010 on, one file
-- per concern.
create schema if not exists pgraft;
comment on schema pgraft is 'pgraft: what the agent beside this PostgreSQL publishes, and its command queue';

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
