import assert from "node:assert/strict";
import {
  authorized,
  clientToken,
  constantTimeEqual,
  hmacSha256,
  isLoopback,
  sha256,
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
