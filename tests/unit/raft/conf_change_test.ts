import assert from "node:assert/strict";
import {
  applyConfChange,
  bootstrapState,
  confChangeProblem,
  decodeConfChange,
  encodeConfChange,
} from "../../../lib/raft/mod.ts";
import { AssertionError } from "../../../lib/assert.ts";

Deno.test("conf changes round-trip through their entry encoding", () => {
  const c = { kind: "add_learner" as const, nodeId: 7, context: '{"address":"a","port":1}' };
  assert.deepEqual(decodeConfChange(encodeConfChange(c)), c);
});

Deno.test("decoding a malformed conf change names what is wrong", () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  assert.throws(() => decodeConfChange(new Uint8Array([0xff])), /not JSON/);
  assert.throws(
    () => decodeConfChange(enc({ kind: "promote", nodeId: 1, context: "" })),
    /unknown kind/,
  );
  assert.throws(
    () => decodeConfChange(enc({ kind: "add_voter", nodeId: 0, context: "" })),
    /bad nodeId/,
  );
  assert.throws(() => decodeConfChange(enc({ kind: "add_voter", nodeId: 2 })), /context/);
});

Deno.test("a proposal must add a node as a learner before it can vote", () => {
  const m = { voters: [1, 2, 3], learners: [4] };
  assert.match(
    confChangeProblem(m, { kind: "add_voter", nodeId: 5, context: "" }, "proposal")!,
    /learner/,
  );
  assert.equal(
    confChangeProblem(m, { kind: "add_voter", nodeId: 4, context: "" }, "proposal"),
    null,
  );
  assert.deepEqual(applyConfChange(m, { kind: "add_voter", nodeId: 4, context: "" }), {
    voters: [1, 2, 3, 4],
    learners: [],
  });
});

Deno.test("the last voter cannot be removed and applying an invalid change is a bug", () => {
  const m = { voters: [1], learners: [2] };
  assert.match(
    confChangeProblem(m, { kind: "remove_node", nodeId: 1, context: "" })!,
    /last voter/,
  );
  assert.throws(
    () => applyConfChange(m, { kind: "remove_node", nodeId: 9, context: "" }),
    AssertionError,
  );
  assert.deepEqual(applyConfChange(m, { kind: "remove_node", nodeId: 2, context: "" }), {
    voters: [1],
    learners: [],
  });
});

Deno.test("bootstrap state commits one add_voter entry per founding member", () => {
  const s = bootstrapState([{ id: 1, context: "a" }, { id: 2, context: "b" }]);
  assert.deepEqual(s.hardState, { term: 1, vote: 0, commit: 2 });
  assert.deepEqual(s.entries.map((e) => [e.index, e.term, e.type]), [[1, 1, "conf_change"], [
    2,
    1,
    "conf_change",
  ]]);
  assert.throws(
    () => bootstrapState([{ id: 1, context: "" }, { id: 1, context: "" }]),
    AssertionError,
  );
});
