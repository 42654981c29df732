import assert from "node:assert/strict";
import {
  authorized,
  clientToken,
  constantTimeEqual,
  hmacSha256,
  isLoopback,
  sha256,
  signRequest,
  verifyRequest,
} from "../../../lib/transport/auth.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const utf8 = (s: string) => new TextEncoder().encode(s);

Deno.test("sha256 matches the FIPS 180-4 examples, across block boundaries", () => {
  assert.equal(
    hex(sha256(utf8("abc"))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    hex(sha256(utf8(""))),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assert.equal(
    hex(sha256(utf8("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("hmacSha256 matches RFC 4231 test cases 2 and 6 (long key)", () => {
  assert.equal(
    hex(hmacSha256(utf8("Jefe"), utf8("what do ya want for nothing?"))),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  );
  assert.equal(
    hex(
      hmacSha256(
        new Uint8Array(131).fill(0xaa),
        utf8("Test Using Larger Than Block-Size Key - Hash Key First"),
      ),
    ),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  );
});

Deno.test("authorized accepts only the bearer token of the same secret", () => {
  assert.equal(authorized(`Bearer ${clientToken("s")}`, "s"), true);
  assert.equal(authorized(`bearer ${clientToken("s")}`, "s"), true);
  assert.equal(authorized(`Bearer ${clientToken("t")}`, "s"), false);
  assert.equal(authorized(clientToken("s"), "s"), false, "missing the Bearer scheme");
  assert.equal(authorized(`Bearer ${clientToken("s").slice(1)}`, "s"), false);
  assert.equal(authorized(null, "s"), false);
  assert.equal(constantTimeEqual("abc", "abc"), true);
  assert.equal(constantTimeEqual("abc", "abd"), false);
  assert.equal(constantTimeEqual("abc", "abcd"), false);
});

Deno.test("isLoopback accepts 127.0.0.0/8 and ::1 only", () => {
  for (
    const h of ["127.0.0.1", "127.255.3.4", "::1", "[::1]", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"]
  ) {
    assert.equal(isLoopback(h), true, h);
  }
  for (
    const h of [
      "10.0.0.1",
      "128.0.0.1",
      "127.0.0",
      "127.0.0.256",
      "::2",
      "::ffff:10.0.0.1",
      "localhost",
      "",
      null,
    ]
  ) {
    assert.equal(isLoopback(h), false, String(h));
  }
});

Deno.test("authorized also accepts the secret itself, and nothing close to either", () => {
  const secret = "s3cret";
  assert.equal(authorized(`Bearer ${secret}`, secret), true);
  assert.equal(authorized(`bearer  ${secret} `, secret), true);
  assert.equal(authorized("Bearer my secret", "my secret"), true, "a secret with a space");
  assert.equal(authorized(`Bearer ${clientToken(secret)}`, secret), true);
  for (
    const header of [
      secret,
      `Basic ${secret}`,
      `Bearer ${secret}x`,
      `Bearer ${secret.slice(1)}`,
      `Bearer x${secret}`,
      `Bearer ${secret.toUpperCase()}`,
      `Bearer ${clientToken(secret)}${secret}`,
      "Bearer ",
      "Bearer",
      "",
    ]
  ) {
    assert.equal(authorized(header, secret), false, JSON.stringify(header));
  }
  assert.equal(authorized(`Bearer ${secret}`, "other"), false);
});

Deno.test("tokens and signatures are those of the hand-written SHA-256 they replaced", async () => {
  // computed with the previous implementation; any change invalidates every
  // deployed token and breaks signatures between old and new nodes
  assert.equal(
    clientToken("s3cret"),
    "d8fcd4b789ba860890d954759aa9efe0bc8156b83b52391015ced5d685200974",
  );
  assert.equal(
    clientToken("k".repeat(100)),
    "1847f5149a07a2cac62e3f5892a0e541aa4f708496a093dc689bf2a224ed0c66",
    "a key longer than a block is hashed first",
  );
  assert.equal(
    clientToken("pässwörd €"),
    "e4b85bd4de462a5b633c2fae15531499f7f256d1335c93775ae784b300e75cc8",
  );
  const parts = (size: number) => ({
    method: "post",
    path: "/raft/snapshot",
    timestamp: "1700000000000",
    from: "3",
    body: new Uint8Array(size).map((_, i) => (i * 7 + 1) & 0xff),
    headers: [
      ["X-Pgraft-Cluster", "c0ffee00-0000-4000-8000-000000000001"],
      ["X-Pgraft-Nonce", "0123456789abcdef"],
      ["X-Pgraft-Snapshot-Id", "snap-1"],
    ] as [string, string][],
  });
  const vectors: [number, string, string][] = [
    [0, "s3cret", "4b05d62b2d37a2f9a9deb581a901ed17bd4ad275ef2a87f00d126da5a1ccc2f6"],
    [0, "k".repeat(100), "87e57447216bd45dafd77a424066d8b03294fc4977136921c0d4a7ce84a97a62"],
    [100, "s3cret", "8916d56bdc811614e66182a63c5398140187af35417017a29559c42f5177d06c"],
    [100, "k".repeat(100), "9ac3bf271ed3f1a2ed8c916b31bf82b30d0733f938a9e6437f8c00e1234d68d7"],
    [20000, "s3cret", "b7c1d5f16c0c3f93392215823872b8f653878613eb20284db3620d413e091acd"],
    [20000, "k".repeat(100), "09d77dbfe9217479d41acfe08ee15f373961d4fee1e34a84f18e311feffa6743"],
  ];
  for (const [size, secret, expected] of vectors) {
    assert.equal(await signRequest(secret, parts(size)), expected, `${size} bytes`);
    assert.equal(await verifyRequest(secret, parts(size), expected), true);
  }
});
