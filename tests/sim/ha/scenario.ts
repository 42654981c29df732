/**
 * The faults of one run, drawn from its seed: partitions (a node cut off
 * entirely, or only its agent's traffic while PostgreSQL still streams, or
 * the cluster split in two), agent crashes and pauses (SIGSTOP), server
 * crashes (kill -9 of the postmaster), machine crashes (both), the
 * operator's switchovers, failover_enabled switched off for a while, and
 * re-clones allowed. Half of the faults aim at the node running the primary
 * at that moment. Everything heals at `faultMs`.
 *
 * @module
 */

import type { NodeId } from "../../../lib/raft/mod.ts";
import type { World } from "./world.ts";

/** Faults start once the cluster had time to elect and promote. */
const FIRST_FAULT_MS = 3_000;

/** Schedule the faults of `world`'s seed. */
export function scheduleFaults(world: World): void {
  if (world.profile === "lease") scheduleLeaseFaults(world);
  else scheduleMixedFaults(world);
  world.at(world.faultMs, () => world.heal());
}

/**
 * Faults aimed at the leader lease: the leader cut off (or only its agent),
 * one of its links cut (a follower that stops hearing it campaigns), a
 * follower's agent restarting at once (it forgot when it last heard the
 * leader), the leader's agent paused.
 */
function scheduleLeaseFaults(world: World): void {
  const rng = world.rng;
  const n = world.nodeCount;
  const leaderOr = (): NodeId => world.leaderNode() || rng.range(1, n);
  const other = (node: NodeId): NodeId => {
    const id = rng.range(1, n - 1);
    return id >= node ? id + 1 : id;
  };
  let t = FIRST_FAULT_MS;
  for (let guard = 0; guard < 1_000; guard++) {
    t += rng.range(150, 800);
    if (t >= world.faultMs) break;
    const roll = rng.float();
    const lasts = rng.range(300, 2_500);
    if (roll < 0.4) {
      const pgToo = rng.chance(0.5);
      let node = 0;
      world.at(t, () => {
        node = leaderOr();
        world.trace(`fault: leader ${node} cut off${pgToo ? "" : " (agent traffic only)"}`);
        for (let o = 1; o <= n; o++) world.cut(node, o, pgToo, 1);
      });
      world.at(t + lasts, () => {
        for (let o = 1; o <= n; o++) world.cut(node, o, pgToo, -1);
      });
    } else if (roll < 0.65) {
      let a = 0;
      let b = 0;
      world.at(t, () => {
        a = leaderOr();
        b = other(a);
        world.trace(`fault: link ${a}-${b} cut`);
        world.cut(a, b, true, 1);
      });
      world.at(t + lasts, () => world.cut(a, b, true, -1));
    } else if (roll < 0.9) {
      let node = 0;
      world.at(t, () => {
        node = other(leaderOr());
        world.agents[node - 1]!.crash();
      });
      world.at(t + rng.range(20, 200), () => world.agents[node - 1]!.start());
    } else {
      let node = 0;
      const ticksFirst = rng.chance(0.5);
      world.at(t, () => {
        node = leaderOr();
        world.agents[node - 1]!.pause();
      });
      world.at(t + rng.range(200, 2_000), () => world.agents[node - 1]!.resume(ticksFirst));
    }
  }
}

/** Every kind of fault, half of them aimed at the primary's node. */
function scheduleMixedFaults(world: World): void {
  const rng = world.rng;
  const n = world.nodeCount;
  const pick = (): NodeId => {
    const primary = world.primaryNode();
    return primary !== 0 && rng.chance(0.5) ? primary : rng.range(1, n);
  };
  const others = (node: NodeId): NodeId[] =>
    Array.from({ length: n }, (_, k) => k + 1).filter((id) => id !== node);

  let t = FIRST_FAULT_MS;
  for (let guard = 0; guard < 1_000; guard++) {
    t += rng.range(150, 1_200);
    if (t >= world.faultMs) break;
    const roll = rng.float();
    const lasts = rng.range(200, 3_500);
    if (roll < 0.25) {
      // One node cut off; 30% of the time only its agent (PostgreSQL keeps streaming).
      const pgToo = rng.chance(0.7);
      let node = 0;
      world.at(t, () => {
        node = pick();
        world.trace(`fault: node ${node} cut off${pgToo ? "" : " (agent traffic only)"}`);
        for (const o of others(node)) world.cut(node, o, pgToo, 1);
      });
      world.at(t + lasts, () => {
        for (const o of others(node)) world.cut(node, o, pgToo, -1);
      });
    } else if (roll < 0.32) {
      // The cluster split in two.
      const side = new Set<NodeId>();
      world.at(t, () => {
        side.add(pick());
        for (let id = 1; id <= n; id++) if (rng.chance(0.3)) side.add(id);
        world.trace(`fault: split {${[...side]}} from the rest`);
        for (const a of side) {
          for (let b = 1; b <= n; b++) if (!side.has(b)) world.cut(a, b, true, 1);
        }
      });
      world.at(t + lasts, () => {
        for (const a of side) {
          for (let b = 1; b <= n; b++) if (!side.has(b)) world.cut(a, b, true, -1);
        }
      });
    } else if (roll < 0.46) {
      let node = 0;
      world.at(t, () => {
        node = pick();
        world.agents[node - 1]!.crash();
      });
      world.at(t + rng.range(50, 3_000), () => world.agents[node - 1]!.start());
    } else if (roll < 0.60) {
      let node = 0;
      const ticksFirst = rng.chance(0.5);
      world.at(t, () => {
        node = pick();
        world.agents[node - 1]!.pause();
      });
      world.at(t + rng.range(100, 3_000), () => world.agents[node - 1]!.resume(ticksFirst));
    } else if (roll < 0.70) {
      world.at(t, () => world.server(pick()).crash(false));
    } else if (roll < 0.78) {
      let node = 0;
      world.at(t, () => {
        node = pick();
        world.trace(`fault: machine ${node} crashes`);
        if (world.server(node).acceptsWrites()) world.checker.outage("machine", node);
        world.agents[node - 1]!.crash();
        world.server(node).crash(true);
      });
      world.at(t + rng.range(300, 3_000), () => world.agents[node - 1]!.start());
    } else if (roll < 0.90) {
      const offset = rng.range(0, n - 1);
      world.at(t, () => {
        const leader = world.agents.find((a) => a.status === "running" && a.entitled());
        if (!leader) return;
        const target = others(leader.id)[offset % (n - 1)]!;
        leader.requestSwitchover(target);
      });
    } else if (roll < 0.96) {
      world.at(t, () => world.setFailoverEnabled(false));
      world.at(t + rng.range(500, 4_000), () => world.setFailoverEnabled(true));
    } else {
      world.at(t, () => {
        world.settings.recloneAllowed = !world.settings.recloneAllowed;
      });
    }
  }
}
