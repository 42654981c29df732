import assert from "node:assert/strict";
import { AssertionError } from "../../../lib/assert.ts";
import { compareCodePoints } from "../../../lib/state/mod.ts";
import { KvStore } from "../../../lib/state/kv_store.ts";
import { SortedIndex, sortForm } from "../../../lib/state/sorted_index.ts";
import { Rng } from "../../sim/rng.ts";
import { randomKey } from "./helpers.ts";

/** The reference: sort every key with the UTF-8 bytes order and filter. */
function naiveList(keys: Iterable<string>, prefix: string, limit: number, after?: string) {
  const enc = new TextEncoder();
  const byBytes = (a: string, b: string) => {
    const x = enc.encode(a);
    const y = enc.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i]! - y[i]!;
    }
    return x.length - y.length;
  };
  return [...keys]
    .filter((k) => k.startsWith(prefix) && (after === undefined || byBytes(k, after) > 0))
    .sort(byBytes)
    .slice(0, limit);
}

function put(store: KvStore, key: string, value: Uint8Array, revision = 1): boolean {
  return store.put(key, new TextEncoder().encode(key).length, value, revision);
}

Deno.test("list matches a naive sort of random non-ASCII and astral keys, with prefixes and pages", () => {
  for (const seed of [1, 2, 3]) {
    const rng = new Rng(seed);
    const store = new KvStore();
    const model = new Map<string, number>();
    for (let step = 1; step <= 4000; step++) {
      const key = randomKey(rng, 4);
      if (rng.chance(0.3)) {
        assert.equal(store.delete(key), model.delete(key));
      } else {
        assert.equal(put(store, key, new Uint8Array(1), step), model.has(key));
        model.set(key, step);
      }
      if (step % 200 === 0) {
        store.checkInvariants();
        const prefix = rng.chance(0.3) ? "" : randomKey(rng, 2);
        const limit = rng.range(1, 300);
        const after = rng.chance(0.5) ? randomKey(rng, 3) : undefined;
        const got = store.list(prefix, limit, after).map((r) => r.key);
        assert.deepEqual(got, naiveList(model.keys(), prefix, limit, after), `seed ${seed}`);
      }
    }
    assert.equal(store.count, model.size);
  }
});

Deno.test("paging with after visits every key once, in order", () => {
  const rng = new Rng(9);
  const store = new KvStore();
  for (let i = 0; i < 3000; i++) {
    const key = randomKey(rng, 6);
    put(store, key, new Uint8Array());
  }
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = store.list("", 97, after).map((r) => r.key);
    if (page.length === 0) break;
    seen.push(...page);
    after = page[page.length - 1];
  }
  const all: string[] = [];
  store.forEach((r) => all.push(r.key));
  assert.deepEqual(seen, all);
  assert.equal(seen.length, store.count);
  for (let i = 1; i < seen.length; i++) assert.ok(compareCodePoints(seen[i - 1]!, seen[i]!) < 0);
});

Deno.test("the byte count follows puts, overwrites and deletes", () => {
  const store = new KvStore();
  put(store, "é", new Uint8Array(10));
  assert.equal(store.bytes, 12);
  assert.equal(store.bytesAfterPut("é", 2, 3), 5);
  assert.equal(store.bytesAfterPut("new", 3, 3), 18);
  put(store, "é", new Uint8Array(3));
  assert.equal(store.bytes, 5);
  assert.equal(store.delete("é"), true);
  assert.equal(store.delete("é"), false);
  assert.equal(store.bytes, 0);
});

Deno.test("values survive slab compaction intact, and slabs stay within twice the live bytes", () => {
  const rng = new Rng(21);
  const store = new KvStore();
  const model = new Map<string, Uint8Array>();
  for (let step = 1; step <= 30_000; step++) {
    const key = `k${rng.int(2000)}`;
    if (rng.chance(0.25)) {
      assert.equal(store.delete(key), model.delete(key));
      continue;
    }
    const size = rng.chance(0.01) ? rng.range(16 * 1024, 40 * 1024) : rng.int(600);
    const value = new Uint8Array(size).fill(step & 0xff);
    put(store, key, value, step);
    value.fill(0); // the store keeps a copy, not the caller's buffer
    model.set(key, new Uint8Array(size).fill(step & 0xff));
    if (step % 3000 === 0) store.checkInvariants();
  }
  store.checkInvariants();
  assert.equal(store.count, model.size);
  for (const [key, value] of model) assert.deepEqual(store.copy(store.get(key)!), value, key);
  let smallLive = 0;
  for (const v of model.values()) if (v.length <= 16 * 1024) smallLive += v.length;
  assert.ok(
    store.slabBytes <= 2 * smallLive + 3 * 1024 * 1024,
    `slabs ${store.slabBytes} bytes for ${smallLive} live bytes`,
  );
  // Delete everything: every slab but the current one is dropped.
  for (const key of [...model.keys()]) store.delete(key);
  store.checkInvariants();
  assert.ok(store.slabBytes <= 1024 * 1024, `${store.slabBytes} bytes of slabs left`);
});

Deno.test("sort forms order keys by code point with native comparison, and invert exactly", () => {
  const rng = new Rng(8);
  for (let i = 0; i < 5000; i++) {
    const a = randomKey(rng, 5);
    const b = randomKey(rng, 5);
    const native = sortForm(a) < sortForm(b) ? -1 : sortForm(a) > sortForm(b) ? 1 : 0;
    assert.equal(native, Math.sign(compareCodePoints(a, b)), `${a} ${b}`);
    assert.equal(sortForm(a).length, a.length);
  }
  assert.equal(sortForm("plain/ascii"), "plain/ascii");
});

/** An item of the index whose form is its own text (ASCII keys are their own sort form). */
const item = (form: string) => ({ form });

Deno.test("the sorted index stays ordered through splits and merges of many keys", () => {
  const rng = new Rng(4);
  const index = new SortedIndex<{ form: string }>();
  const present = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const key = `k${rng.int(6000).toString().padStart(5, "0")}`;
    if (present.has(key)) {
      index.delete(key);
      present.delete(key);
    } else {
      index.insert(item(key));
      present.add(key);
    }
  }
  index.checkInvariants();
  // Delete nearly everything: chunks merge and disappear.
  for (const key of [...present].slice(0, present.size - 3)) {
    index.delete(key);
    present.delete(key);
  }
  index.checkInvariants();
  const left: string[] = [];
  index.forEach((i) => left.push(i.form));
  assert.deepEqual(left, [...present].sort());
});

Deno.test("scan starts at the first item at or after the start, or after it when exclusive", () => {
  const index = SortedIndex.fromSorted(["a", "b", "c"].map(item));
  const from = (start: string, exclusive: boolean) => {
    const out: string[] = [];
    index.scan(start, exclusive, (i) => (out.push(i.form), true));
    return out;
  };
  assert.deepEqual(from("b", false), ["b", "c"]);
  assert.deepEqual(from("b", true), ["c"]);
  assert.deepEqual(from("bb", true), ["c"]);
  assert.deepEqual(from("d", false), []);
  assert.deepEqual(from("", false), ["a", "b", "c"]);
});

Deno.test("inserting a form twice or deleting an absent one is a bug", () => {
  const index = SortedIndex.fromSorted(["a", "c"].map(item));
  assert.throws(() => index.insert(item("a")), AssertionError);
  assert.throws(() => index.delete("b"), AssertionError);
  assert.throws(() => index.delete("z"), AssertionError);
});
