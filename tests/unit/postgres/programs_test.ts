import assert from "node:assert/strict";
import { missingSupervisorPrograms } from "../../../lib/postgres/programs.ts";

Deno.test("manage_postgres names the programs a server installation lacks, and how to get them", async () => {
  const binDir = await Deno.makeTempDir({ prefix: "pgraft-bins-" });
  try {
    const bins = {
      binDir,
      initdb: `${binDir}/initdb`,
      postgres: `${binDir}/postgres`,
      majorVersion: 18,
    };
    const message = await missingSupervisorPrograms(bins);
    assert.match(message ?? "", /needs pg_controldata, pg_basebackup, pg_rewind beside/);
    assert.match(message ?? "", /apt-get install postgresql/);
    for (const name of ["pg_controldata", "pg_basebackup"]) {
      await Deno.writeTextFile(`${binDir}/${name}`, "");
    }
    assert.match(await missingSupervisorPrograms(bins) ?? "", /needs pg_rewind beside/);
    await Deno.writeTextFile(`${binDir}/pg_rewind`, "");
    assert.equal(await missingSupervisorPrograms(bins), null);
  } finally {
    await Deno.remove(binDir, { recursive: true });
  }
});
