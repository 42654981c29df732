/**
 * Optional TLS between peers, with a CA and a node certificate made by the
 * `openssl` CLI in a temporary directory (skipped, with a message, when it is
 * missing), and the three `pgraft.tls_*` settings.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../lib/config/mod.ts";
import { Metrics, PeerClient, PeerServer } from "../../../lib/transport/mod.ts";
import { CLUSTER, heartbeat, makeApp, SECRET, until } from "./helpers.ts";

async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function hasOpenssl(): Promise<boolean> {
  try {
    await run("openssl", ["version"]);
    return true;
  } catch {
    return false;
  }
}

const OPENSSL = await hasOpenssl();
if (!OPENSSL) {
  console.warn("tls_test.ts: the openssl CLI is not installed; skipping the TLS connection tests");
}

/** A CA and a certificate for 127.0.0.1/localhost signed by it, in a temporary directory. */
async function makeCertificates(): Promise<{ dir: string; ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=pgraft test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  await run("openssl", [
    "req",
    ...ec,
    "-keyout",
    "node.key",
    "-out",
    "node.csr",
    "-subj",
    "/CN=localhost",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    "node.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "node.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ], dir);
  return { dir, ca: `${dir}/ca.pem`, cert: `${dir}/node.pem`, key: `${dir}/node.key` };
}

function client(port: number, tls: { caFile: string | null } | undefined, unreachable: number[]) {
  return new PeerClient({
    nodeId: 1,
    peerId: 2,
    baseUrl: `http://127.0.0.1:${port}`,
    clusterId: () => CLUSTER,
    authSecret: SECRET,
    metrics: new Metrics(),
    onUnreachable: (peer) => unreachable.push(peer),
    onSnapshotResult: () => {},
    ...(tls ? { tls } : {}),
  });
}

Deno.test({
  name: "peers talk HTTPS when the server has a certificate and the client trusts its CA",
  ignore: !OPENSSL,
  fn: async () => {
    const certs = await makeCertificates();
    const t = makeApp();
    const server = new PeerServer(t.app, {
      hostname: "127.0.0.1",
      port: 0,
      tls: { certFile: certs.cert, keyFile: certs.key },
    });
    await server.start();
    assert.equal(server.protocol, "https");
    try {
      const trusted: number[] = [];
      const ok = client(server.port, { caFile: certs.ca }, trusted);
      try {
        assert.equal(ok.baseUrl, `https://127.0.0.1:${server.port}`);
        ok.send([heartbeat(1), heartbeat(2)]);
        await until(() => t.messages().length === 2, "delivery over TLS");
        assert.deepEqual(await ok.rpc("echo", { over: "tls" }, 2000), { echoed: { over: "tls" } });
        assert.deepEqual(trusted, []);
      } finally {
        await ok.close();
      }

      const untrusted: number[] = [];
      const systemRoots = client(server.port, { caFile: null }, untrusted);
      try {
        systemRoots.send([heartbeat(3)]);
        await until(() => untrusted.length > 0, "onUnreachable: unknown issuer");
        await assert.rejects(systemRoots.rpc("echo", {}, 2000), /failed/);
      } finally {
        await systemRoots.close();
      }

      const plain: number[] = [];
      const http = client(server.port, undefined, plain);
      try {
        http.send([heartbeat(4)]);
        await until(() => plain.length > 0, "onUnreachable: plain HTTP to a TLS port");
      } finally {
        await http.close();
      }
      assert.equal(t.messages().length, 2);
    } finally {
      await server.stop();
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

Deno.test("missing TLS files are reported by name", async () => {
  const t = makeApp();
  const server = new PeerServer(t.app, {
    hostname: "127.0.0.1",
    port: 0,
    tls: { certFile: "/nonexistent/node.pem", keyFile: "/nonexistent/node.key" },
  });
  assert.throws(() => server.start(), /cannot read the TLS certificate "\/nonexistent\/node\.pem"/);
  await server.stop();
  assert.throws(
    () => client(1, { caFile: "/nonexistent/ca.pem" }, []),
    /cannot read the TLS CA file "\/nonexistent\/ca\.pem"/,
  );
});

const REQUIRED = "pgraft.node_id = 1\npgraft.address = '10.0.0.1'\npgraft.port = 7001\n";

async function load(files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "pgraft-tls-conf-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = `${dir}/${name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
    return { dir: await Deno.realPath(dir), config: await loadConfig(`${dir}/postgresql.conf`) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the tls_* settings default to none and are paths relative to the file that sets them", async () => {
  const none = await load({ "postgresql.conf": REQUIRED });
  assert.equal(none.config.settings.tlsCertFile, null);
  assert.equal(none.config.settings.tlsKeyFile, null);
  assert.equal(none.config.settings.tlsCaFile, null);
  for (const name of ["tls_cert_file", "tls_key_file", "tls_ca_file"]) {
    const entry = none.config.entries.find((e) => e.name === name);
    assert.deepEqual(
      [entry?.setting, entry?.source],
      ["", "default"],
      name,
    );
  }

  const set = await load({
    "postgresql.conf": REQUIRED + "include 'tls/tls.conf'\npgraft.tls_ca_file = '/etc/ca.pem'\n",
    "tls/tls.conf": "pgraft.tls_cert_file = 'node.pem'\npgraft.tls_key_file = 'private/node.key'\n",
  });
  assert.equal(set.config.settings.tlsCertFile, `${set.dir}/tls/node.pem`);
  assert.equal(set.config.settings.tlsKeyFile, `${set.dir}/tls/private/node.key`);
  assert.equal(set.config.settings.tlsCaFile, "/etc/ca.pem");
  const cert = set.config.entries.find((e) => e.name === "tls_cert_file");
  assert.equal(cert?.setting, `${set.dir}/tls/node.pem`);
  assert.equal(cert?.sourcefile, `${set.dir}/tls/tls.conf`);
  assert.equal(cert?.sourceline, 1);

  const emptied = await load({
    "postgresql.conf": REQUIRED +
      "pgraft.tls_cert_file = 'a'\npgraft.tls_key_file = 'b'\n" +
      "pgraft.tls_cert_file = ''\npgraft.tls_key_file = ''\n",
  });
  assert.equal(emptied.config.settings.tlsCertFile, null, "an empty value means none");
});

Deno.test("tls_cert_file without tls_key_file (or the reverse) is a ConfigError at its line", async () => {
  await assert.rejects(
    load({ "postgresql.conf": REQUIRED + "\npgraft.tls_cert_file = 'node.pem'\n" }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.line, 5);
      assert.match(
        error.message,
        /^postgresql\.conf:5: pgraft\.tls_cert_file is set but pgraft\.tls_key_file is not; set both or neither$/,
      );
      return true;
    },
  );
  await assert.rejects(
    load({
      "postgresql.conf": REQUIRED + "include 'more.conf'\n",
      "more.conf": "# keys\npgraft.tls_key_file = 'node.key'\n",
    }),
    /^ConfigError: more\.conf:2: pgraft\.tls_key_file is set but pgraft\.tls_cert_file is not/,
  );
});
