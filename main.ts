/**
 * pgraft: a Raft consensus agent beside each PostgreSQL server.
 * This file only parses and dispatches; see lib/cli.
 *
 * @module
 */

import { main } from "./lib/cli/mod.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
