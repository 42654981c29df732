-- Privileges: command functions for superusers and pgraft_admin, reads for pgraft_monitor.

do $$
declare
  f text;
begin
  foreach f in array array[
    'pgraft_is_leader()', 'pgraft_quorum_met()', 'pgraft_get_term()', 'pgraft_get_leader()',
    'pgraft_get_nodes()', 'pgraft_get_cluster_status()', 'pgraft_log_get_replication_status()',
    'pgraft_log_get_stats()', 'pgraft_get_events()', 'pgraft_get_config()',
    'pgraft_kv_get(text)', 'pgraft_kv_list(text)']
  loop
    execute format('revoke all on function public.%s from public', f);
    execute format('grant execute on function public.%s to pgraft_monitor', f);
  end loop;
  foreach f in array array[
    'pgraft_init()', 'pgraft_add_node(int, text, int)', 'pgraft_remove_node(int)',
    'pgraft_transfer_leadership(int)', 'pgraft_set_config(text, text)',
    'pgraft_kv_put(text, text)', 'pgraft_kv_delete(text)']
  loop
    execute format('revoke all on function public.%s from public', f);
    execute format('grant execute on function public.%s to pgraft_admin', f);
  end loop;
end
$$;
