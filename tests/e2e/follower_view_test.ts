/**
 * Every node answers every monitoring query about every member (DESIGN.md
 * "Control schema and SQL"): the leader shares its view of the members'
 * progress and contact with its heartbeats, so a follower's pgraft_get_nodes()
 * shows each member's match_index and lag, and a member the leader cannot
 * reach as `unreachable`.
 */

import assert from "node:assert/strict";
import { eventually, withCluster } from "../helpers/cluster.ts";

const FAST = "pgraft.heartbeat_interval = '50ms'\npgraft.election_timeout = '500ms'\n";

Deno.test({
  name:
    "a follower shows every member's progress from the leader's heartbeats, and a killed member as unreachable",
  fn: async () => {
    await withCluster({ nodes: 3, bootstrap: true, extraConfig: FAST }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const [follower, other] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
      for (let i = 0; i < 20; i++) {
        const w = await cluster.psql(leader, `SELECT pgraft_kv_put('view/${i}', 'v');`);
        assert.equal(w.code, 0, w.stderr);
      }
      const rows = await eventually("the follower sees every member caught up", 5_000, async () => {
        const rows = await cluster.sql(follower)`
          select node_id, state, match_index, next_index, lag_entries, last_heartbeat_ms
            from pgraft_get_nodes() order by node_id`;
        const ok = rows.length === 3 &&
          rows.every((r) => r.match_index !== null && Number(r.lag_entries) === 0);
        return ok ? rows : null;
      });
      const byId = new Map(rows.map((r) => [r.node_id as number, r]));
      assert.equal(byId.get(leader)!.state, "leader");
      assert.equal(byId.get(follower)!.state, "follower");
      assert.equal(byId.get(other)!.state, "follower");
      assert.ok(byId.get(other)!.last_heartbeat_ms !== null, "the leader's last contact is shown");

      await cluster.stopAgent(other, "SIGKILL");
      const killedAt = performance.now();
      const seen = await eventually(
        `node ${other} unreachable on the follower`,
        5_000,
        async () => {
          const [r] = await cluster.sql(follower)`
          select state, match_index from pgraft_get_nodes() where node_id = ${other}`;
          return r?.state === "unreachable" ? r : null;
        },
      );
      assert.ok(seen.match_index !== null, "its last known match index stays");
      const ms = Math.round(performance.now() - killedAt);
      assert.ok(ms <= 2_000, `unreachable shown after ${ms} ms`);
      console.log(JSON.stringify({ killed_member_unreachable_on_follower_ms: ms }));
    });
  },
});
