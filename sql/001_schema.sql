-- pgraft control schema. Tables live in schema pgraft; the pgraft_* functions
-- live in public so that the unqualified calls of the user's documents work.
create schema if not exists pgraft;
comment on schema pgraft is 'pgraft: Raft state, applied state and live status of this node''s agent';
