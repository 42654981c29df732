/**
 * The parts of `pgraft status` and `pgraft dev` that need no cluster: the
 * members' table (like `patronictl list`) from the SQL functions' rows, and
 * dev's choice of ports (the README's fixed ones when free).
 */

import assert from "node:assert/strict";
import { choosePorts, DEV_PORTS } from "../../../lib/cli/dev_command.ts";
import { formatStatus, statusMembers } from "../../../lib/cli/status_command.ts";

const CLUSTER = {
  node_id: 2,
  state: "follower",
  leader_id: 1,
  current_term: "7",
  quorum_met: true,
  cluster_name: "production-cluster",
  cluster_id: "6f1c3e58-0000-4000-8000-000000000001",
  agent_running: true,
};

const NODES = [
  {
    node_id: 1,
    address: "10.0.0.11",
    port: 7001,
    state: "leader",
    is_voter: true,
    lag_entries: "0",
  },
  {
    node_id: 2,
    address: "10.0.0.12",
    port: 7002,
    state: "follower",
    is_voter: true,
    lag_entries: "3",
  },
  {
    node_id: 3,
    address: "10.0.0.13",
    port: 7003,
    state: "unreachable",
    is_voter: true,
    lag_entries: "120",
  },
  {
    node_id: 4,
    address: "10.0.0.14",
    port: 7004,
    state: "learner",
    is_voter: false,
    lag_entries: null,
  },
];

Deno.test("status members: role from the leader and voting, state from what the node sees, lag in entries", () => {
  const members = statusMembers(CLUSTER, NODES);
  assert.deepEqual(members.map((m) => [m.member, m.role, m.state, m.term, m.lag]), [
    [1, "leader", "running", 7, 0],
    [2, "follower", "running", 7, 3],
    [3, "follower", "unreachable", 7, 120],
    [4, "learner", "running", 7, null],
  ]);
  assert.deepEqual({ host: members[2]!.host, port: members[2]!.port }, {
    host: "10.0.0.13",
    port: 7003,
  });
});

Deno.test("status members: a node whose agent stopped shows every state as unknown and no leader", () => {
  const members = statusMembers(
    { ...CLUSTER, leader_id: null, agent_running: false },
    NODES.map((n) => ({ ...n, state: "unknown" })),
  );
  assert.ok(members.every((m) => m.state === "unknown" && m.role !== "leader"));
});

Deno.test("status table: a header with cluster, id, leader, term; one aligned line per member", () => {
  const text = formatStatus({
    cluster: CLUSTER,
    members: statusMembers(CLUSTER, NODES),
    nodes: NODES,
  });
  const lines = text.trimEnd().split("\n");
  assert.equal(
    lines[0],
    "cluster production-cluster (6f1c3e58-0000-4000-8000-000000000001) · leader: node 1 · " +
      "term 7 · quorum: yes · as seen by node 2",
  );
  assert.equal(lines[1], "");
  assert.equal(lines[2], "member | host:port      | role     | state       | term | lag");
  assert.equal(lines[4], "1      | 10.0.0.11:7001 | leader   | running     | 7    | 0");
  assert.equal(lines[6], "3      | 10.0.0.13:7003 | follower | unreachable | 7    | 120");
  assert.equal(lines[7], "4      | 10.0.0.14:7004 | learner  | running     | 7    | unknown");
  assert.equal(lines.length, 8);
});

Deno.test("status table of a node in no cluster yet says so", () => {
  const text = formatStatus({
    cluster: { ...CLUSTER, cluster_id: null, leader_id: null, quorum_met: false },
    members: [],
    nodes: [],
  });
  assert.match(text, /\(not initialized\) · leader: none known · term 7 · quorum: no/);
  assert.match(text, /\(no rows\)/);
});

Deno.test("dev ports: the README's fixed ports when free, any free port for one that is taken", () => {
  // A base whose ports are all free right now (other processes on the machine take ports too).
  const free = (port: number) => {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return true;
    } catch {
      return false;
    }
  };
  let base = { pg: 0, agent: 0 };
  for (let attempt = 0; attempt < 100; attempt++) {
    const pg = 20_000 + Math.floor(Math.random() * 10_000);
    const ports = [pg, pg + 1, pg + 2, pg + 100, pg + 101, pg + 102];
    if (ports.every(free)) {
      base = { pg, agent: pg + 100 };
      break;
    }
  }
  assert.ok(base.pg > 0, "found free ports to test with");
  const busy = Deno.listen({ hostname: "127.0.0.1", port: base.agent + 1 });
  try {
    const nodes = choosePorts(3, base);
    assert.deepEqual(nodes.map((n) => n.id), [1, 2, 3]);
    assert.deepEqual(nodes.map((n) => n.pgPort), [base.pg, base.pg + 1, base.pg + 2]);
    assert.equal(nodes[0]!.agentPort, base.agent);
    assert.notEqual(nodes[1]!.agentPort, base.agent + 1, "a taken port is not reused");
    assert.equal(nodes[2]!.agentPort, base.agent + 2);
    const all = nodes.flatMap((n) => [n.pgPort, n.agentPort]);
    assert.equal(new Set(all).size, all.length, "no port twice");
  } finally {
    busy.close();
  }
  assert.deepEqual(DEV_PORTS, { pg: 5433, agent: 7001 }, "README's examples name these");
});
