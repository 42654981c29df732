import assert from "node:assert/strict";
import { parseBoolean, parseBytes, parseDuration, parseInteger } from "../../../lib/config/mod.ts";
import { roundHalfEven, splitNumberAndUnit } from "../../../lib/config/units.ts";

Deno.test("durations accept every PostgreSQL time unit and mean milliseconds without one", () => {
  assert.equal(parseDuration("250"), 250);
  assert.equal(parseDuration("90ms"), 90);
  assert.equal(parseDuration("1500us"), 2);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("3min"), 180_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("1d"), 86_400_000);
});

Deno.test("durations take fractions, exponents and white space around the unit", () => {
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration(".25s"), 250);
  assert.equal(parseDuration("1e3"), 1000);
  assert.equal(parseDuration(" 100 ms "), 100);
  assert.equal(parseDuration("+7ms"), 7);
});

Deno.test("fractional milliseconds round half to even like PostgreSQL's rint", () => {
  assert.equal(parseDuration("2.5ms"), 2);
  assert.equal(parseDuration("3.5ms"), 4);
  assert.equal(parseDuration("2.6ms"), 3);
  assert.equal(parseDuration("0.4ms"), 0);
  assert.equal(roundHalfEven(-1.5), -2);
  assert.equal(roundHalfEven(0.5), 0);
});

Deno.test("a negative duration keeps its sign for the caller's range check", () => {
  assert.equal(parseDuration("-5ms"), -5);
});

Deno.test("an unknown duration unit is a RangeError listing the valid units", () => {
  assert.throws(() => parseDuration("5sec"), (e: unknown) => {
    assert.ok(e instanceof RangeError);
    assert.match(e.message, /unknown unit "sec"/);
    assert.match(e.message, /"us", "ms", "s", "min", "h", "d"/);
    return true;
  });
  assert.throws(() => parseDuration("5MS"), RangeError, "units are case-sensitive like PostgreSQL");
});

Deno.test("text that is not a number is a TypeError", () => {
  for (const raw of ["soon", "", "ms", "1.2.3s", "1 2ms", "--1", "0x.5"]) {
    assert.throws(() => parseDuration(raw), TypeError, raw);
  }
  assert.throws(() => parseDuration("0x"), RangeError, "0 with the unit x, as strtol reads it");
});

Deno.test("memory sizes use PostgreSQL's units with kB as 1024 bytes", () => {
  assert.equal(parseBytes("512"), 512);
  assert.equal(parseBytes("8B"), 8);
  assert.equal(parseBytes("64kB"), 65536);
  assert.equal(parseBytes("1.5MB"), 1_572_864);
  assert.equal(parseBytes("2GB"), 2 * 1024 ** 3);
  assert.equal(parseBytes("1TB"), 1024 ** 4);
  assert.throws(() => parseBytes("64kb"), RangeError);
  assert.throws(() => parseBytes("lots"), TypeError);
});

Deno.test("integers are decimal or hexadecimal and reject fractions and units", () => {
  assert.equal(parseInteger("512"), 512);
  assert.equal(parseInteger(" -3 "), -3);
  assert.equal(parseInteger("0x200"), 512);
  assert.equal(parseInteger("0X1f"), 31);
  assert.equal(parseInteger("010"), 10);
  for (const raw of ["1.5", "1e3", "12ms", "abc", "", "99999999999999999999"]) {
    assert.throws(() => parseInteger(raw), TypeError, raw);
  }
});

Deno.test("booleans accept PostgreSQL's words, 1 and 0, in any case", () => {
  for (const raw of ["on", "true", "yes", "1", "ON", "True", " YES "]) {
    assert.equal(parseBoolean(raw), true, raw);
  }
  for (const raw of ["off", "false", "no", "0", "OFF", "False", "No"]) {
    assert.equal(parseBoolean(raw), false, raw);
  }
});

Deno.test("booleans accept unique prefixes and reject the ambiguous 'o'", () => {
  assert.equal(parseBoolean("t"), true);
  assert.equal(parseBoolean("tr"), true);
  assert.equal(parseBoolean("f"), false);
  assert.equal(parseBoolean("y"), true);
  assert.equal(parseBoolean("n"), false);
  assert.equal(parseBoolean("of"), false);
  for (const raw of ["o", "", "2", "maybe", "onn", "truee", "enable"]) {
    assert.throws(() => parseBoolean(raw), TypeError, raw);
  }
});

Deno.test("a number is split from the unit letters after it", () => {
  assert.deepEqual(splitNumberAndUnit("90ms"), { number: 90, unit: "ms", fractional: false });
  assert.deepEqual(splitNumberAndUnit("1.5 s"), { number: 1.5, unit: "s", fractional: true });
  assert.deepEqual(splitNumberAndUnit("0xffB"), { number: 0xffb, unit: "", fractional: false });
});
