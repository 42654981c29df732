import assert from "node:assert/strict";
import { Watchdog } from "../../../lib/postgres/watchdog.ts";
import { waitForPidGone } from "../../../lib/postgres/server.ts";

/** A stand-in postmaster: a process whose working directory is the "data directory". */
async function standIn(): Promise<{ dir: string; child: Deno.ChildProcess }> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-watchdog-" });
  // SIGQUIT ends `sleep` as it ends a postmaster (immediate shutdown).
  const child = new Deno.Command("sleep", {
    args: ["30"],
    cwd: dir,
    stdout: "null",
    stderr: "null",
  })
    .spawn();
  return { dir, child };
}

async function alive(child: Deno.ChildProcess, withinMs: number): Promise<boolean> {
  const timer = new Promise<boolean>((r) => setTimeout(() => r(true), withinMs));
  return await Promise.race([child.status.then(() => false), timer]);
}

Deno.test("the watchdog stops the server once its deadline passes without a renewal", async () => {
  const { dir, child } = await standIn();
  try {
    const started = performance.now();
    const watchdog = await Watchdog.start(child.pid, dir, 150);
    const status = await child.status;
    const ms = performance.now() - started;
    assert.equal(status.signal, "SIGQUIT");
    assert.ok(ms >= 140 && ms < 2_000, `stopped after ${Math.round(ms)} ms`);
    await watchdog.fire();
    assert.equal(watchdog.running, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renewals keep the server running; disarm leaves it running", async () => {
  const { dir, child } = await standIn();
  try {
    const watchdog = await Watchdog.start(child.pid, dir, 150);
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 60));
      watchdog.renew(150);
    }
    await watchdog.disarm();
    assert.equal(await alive(child, 400), true, "the disarmed watchdog stopped the server");
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("when the agent's end of the pipe closes, the server stops at once", async () => {
  const { dir, child } = await standIn();
  try {
    const watchdog = await Watchdog.start(child.pid, dir, 60_000);
    const started = performance.now();
    await watchdog.fire(); // closes the pipe, as the kernel does when the agent dies
    const status = await child.status;
    assert.equal(status.signal, "SIGQUIT");
    assert.ok(performance.now() - started < 1_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a PID that no longer runs in the data directory is left alone", async () => {
  const { dir, child } = await standIn();
  const other = await Deno.makeTempDir({ prefix: "pgraft-watchdog-other-" });
  try {
    const watchdog = await Watchdog.start(child.pid, other, 50);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(watchdog.running, false);
    assert.equal(await alive(child, 100), true, "a process of another directory was signalled");
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await waitForPidGone(child.pid, 2_000);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(other, { recursive: true });
  }
});
