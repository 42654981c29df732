/**
 * `pgraft status --config FILE [--json]`: the cluster as this node sees it,
 * read through the same SQL functions operators use.
 *
 * @module
 */

import postgres from "postgres";
import { configAndConnection, type Flags, formatTable, type Output } from "./output.ts";

/** Run the command. */
export async function statusCommand(flags: Flags, io: Output): Promise<number> {
  const loaded = await configAndConnection(flags, io, "status");
  if (!loaded) return 1;
  const { connection } = loaded;
  const sql = postgres({ ...connection, max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    const [cluster] = await sql`select * from pgraft_get_cluster_status()`;
    const nodes = await sql`select * from pgraft_get_nodes()`;
    if (flags.json) {
      io.out(JSON.stringify({ cluster: cluster ?? null, nodes }, null, 2) + "\n");
    } else {
      io.out(formatTable(cluster ? [cluster] : []) + "\n" + formatTable([...nodes]));
    }
    if (cluster?.agent_running) return 0;
    io.err(
      "pgraft status: the agent is not running on this node (its status is not being refreshed); " +
        "start it with pgraft run --config FILE\n",
    );
    return 1;
  } catch (error) {
    io.err(`pgraft status: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}
