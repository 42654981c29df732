import assert from "node:assert/strict";
import { parseSettingValue, SETTINGS } from "../../../lib/config/mod.ts";
import {
  encodeMemberContext,
  KV_KEY_BYTES_MAX,
  KV_LIST_LIMIT_MAX,
  KV_QUOTA_BYTES_DEFAULT,
  KV_QUOTA_SETTING,
  KV_VALUE_BYTES_MAX,
  kvKeyProblem,
  kvListLimitProblem,
  kvQuotaProblem,
  kvValueProblem,
  memberAddressProblem,
  parseKvQuotaSetting,
  parseMemberContext,
  utf8Length,
} from "../../../lib/state/mod.ts";
import { Rng } from "../../sim/rng.ts";
import { randomKey } from "./helpers.ts";

Deno.test("utf8Length counts the bytes TextEncoder writes, lone surrogates included", () => {
  const rng = new Rng(3);
  const samples = ["", "a", "é", "中", "😀", "\ud800", "a\udc00b", "\ud83d\ud83d\ude00"];
  for (let i = 0; i < 500; i++) samples.push(randomKey(rng, 8));
  for (const s of samples) assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
});

Deno.test("a key is non-empty, NUL-free, well-formed and at most 1024 bytes of UTF-8", () => {
  assert.equal(kvKeyProblem("config/feature-x"), null);
  assert.equal(kvKeyProblem("é".repeat(KV_KEY_BYTES_MAX / 2)), null);
  assert.deepEqual(
    [kvKeyProblem("")?.status, kvKeyProblem("")?.sqlstate],
    [400, "22023"],
  );
  assert.match(kvKeyProblem("")!.message, /non-empty/);
  assert.deepEqual([kvKeyProblem("a\0b")?.status, kvKeyProblem("a\0b")?.sqlstate], [400, "22021"]);
  assert.match(kvKeyProblem("a\0b")!.message, /NUL/);
  assert.equal(kvKeyProblem("a\ud800")?.status, 400);
  const long = kvKeyProblem("é".repeat(KV_KEY_BYTES_MAX / 2) + "x");
  assert.deepEqual([long?.status, long?.sqlstate], [414, "22001"]);
  assert.match(long!.message, /key too long: 1025 bytes \(at most 1024\)/);
  assert.ok(long!.hint.length > 0);
  assert.equal(kvKeyProblem(1 as unknown as string)?.status, 400);
});

Deno.test("a value is at most 1 MiB", () => {
  assert.equal(kvValueProblem(0), null);
  assert.equal(kvValueProblem(KV_VALUE_BYTES_MAX), null);
  const p = kvValueProblem(KV_VALUE_BYTES_MAX + 1);
  assert.deepEqual([p?.status, p?.sqlstate], [413, "22001"]);
  assert.match(p!.message, /1048577 bytes \(at most 1048576\)/);
});

Deno.test("a list limit is 1..10000", () => {
  assert.equal(kvListLimitProblem(1), null);
  assert.equal(kvListLimitProblem(KV_LIST_LIMIT_MAX), null);
  for (const bad of [0, -1, 1.5, KV_LIST_LIMIT_MAX + 1, NaN]) {
    assert.equal(kvListLimitProblem(bad)?.status, 400, String(bad));
  }
});

Deno.test("the quota refuses only a write that grows the store beyond it", () => {
  assert.equal(kvQuotaProblem({ currentBytes: 0, nextBytes: 100 }, 100), null);
  const p = kvQuotaProblem({ currentBytes: 90, nextBytes: 101 }, 100);
  assert.deepEqual([p?.status, p?.sqlstate], [507, "53400"]);
  assert.match(p!.message, /101 bytes, over the quota of 100 bytes/);
  assert.match(p!.hint, /kv_quota/);
  // Over the quota already (it was lowered): shrinking or keeping the size is allowed.
  assert.equal(kvQuotaProblem({ currentBytes: 500, nextBytes: 400 }, 100), null);
  assert.equal(kvQuotaProblem({ currentBytes: 500, nextBytes: 500 }, 100), null);
  assert.notEqual(kvQuotaProblem({ currentBytes: 500, nextBytes: 501 }, 100), null);
});

Deno.test("the kv_quota setting is a plain positive integer of bytes", () => {
  assert.equal(parseKvQuotaSetting("1048576"), 1048576);
  for (const bad of ["", "0", "64MB", "-5", "1e6", " 5", "99999999999999999"]) {
    assert.equal(parseKvQuotaSetting(bad), null, bad);
  }
});

Deno.test("a member address is a host name or IP literal without scheme or port", () => {
  for (const ok of ["10.0.0.12", "db-1.example.com", "::1", "[fe80::1]", "node_2"]) {
    assert.equal(memberAddressProblem(ok, 7001), null, ok);
  }
  for (const bad of ["", "  ", "http://x", "a b", "x/y", "a".repeat(256), "é"]) {
    const p = memberAddressProblem(bad, 7001);
    assert.deepEqual([p?.status, p?.sqlstate], [400, "22023"], bad);
    assert.match(p!.message, /invalid address/);
  }
  assert.equal(memberAddressProblem("a".repeat(255), 1), null);
  for (const port of [0, 65536, 1.5, NaN]) {
    assert.match(memberAddressProblem("h", port)!.message, /invalid port/, String(port));
  }
});

Deno.test("a member context round-trips, and a malformed one names the problem", () => {
  const text = encodeMemberContext({ address: "10.0.0.3", port: 7003 });
  assert.equal(text, '{"address":"10.0.0.3","port":7003}');
  assert.deepEqual(parseMemberContext(text), { address: "10.0.0.3", port: 7003 });
  assert.equal(parseMemberContext(""), null);
  assert.throws(() => parseMemberContext("{"), SyntaxError);
  assert.throws(() => parseMemberContext("[]"), /not an object/);
  assert.throws(() => parseMemberContext('{"port":1}'), /address is not a string/);
  assert.throws(() => parseMemberContext('{"address":"h","port":"1"}'), /port is not a number/);
  assert.throws(() => parseMemberContext('{"address":"h","port":0}'), /invalid port/);
  assert.throws(() => parseMemberContext('{"address":"a b","port":1}'), /invalid address/);
  assert.throws(() => encodeMemberContext({ address: "http://h", port: 1 }), RangeError);
});

Deno.test("the kv_quota setting's default is the state machine's default quota", () => {
  const spec = SETTINGS.find((s) => s.name === KV_QUOTA_SETTING);
  assert.ok(spec?.default);
  assert.equal(parseSettingValue(spec.name, spec.default).value, KV_QUOTA_BYTES_DEFAULT);
});
