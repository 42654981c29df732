import assert from "node:assert/strict";
import { AssertionError } from "../../../lib/assert.ts";
import { FollowerProgress, Inflights, ProgressTracker } from "../../../lib/raft/tracker.ts";

Deno.test("inflight window: full at capacity, and a send through a full window is a bug", () => {
  const w = new Inflights(3);
  w.add(10);
  w.add(20);
  assert.equal(w.full(), false);
  w.add(30);
  assert.equal(w.count, 3);
  assert.equal(w.full(), true);
  assert.throws(() => w.add(40), AssertionError);
});

Deno.test("inflight window: an acknowledgement frees every append ending at or before it", () => {
  const w = new Inflights(4);
  for (const last of [10, 20, 30, 40]) w.add(last);
  w.freeTo(9);
  assert.equal(w.count, 4, "nothing ends at or before 9");
  w.freeTo(25);
  assert.equal(w.count, 2, "10 and 20 freed");
  w.freeTo(40);
  assert.equal(w.count, 0);
  w.add(50);
  assert.equal(w.count, 1, "the window is reusable once freed");
});

Deno.test("inflight window: freeing the first one makes room for exactly one more append", () => {
  const w = new Inflights(2);
  w.add(5);
  w.add(9);
  w.freeFirstOne();
  assert.equal(w.full(), false);
  w.freeTo(5);
  assert.equal(w.count, 1, "the oldest (5) was the one freed: 9 is still out");
  w.add(12);
  assert.equal(w.full(), true);
});

Deno.test("inflight window: appends must be recorded in increasing order", () => {
  const w = new Inflights(4);
  w.add(10);
  assert.throws(() => w.add(10), AssertionError);
  assert.throws(() => w.add(7), AssertionError);
});

Deno.test("inflight window: shrinking the capacity keeps what is out and holds new appends back", () => {
  const w = new Inflights(4);
  w.add(1);
  w.add(2);
  w.add(3);
  w.resize(2);
  assert.equal(w.count, 3);
  assert.equal(w.full(), true);
  w.freeTo(2);
  assert.equal(w.full(), false);
  w.reset();
  assert.equal(w.count, 0);
});

Deno.test("§5.3 probe: a new follower gets one append at a time until it answers", () => {
  const pr = new FollowerProgress(2, 11, 4);
  assert.equal(pr.state, "probe");
  assert.equal(pr.match, 0);
  assert.equal(pr.next, 11);
  assert.equal(pr.isPaused(), false);
  pr.appendSent(15);
  assert.equal(pr.isPaused(), true, "one probe out");
  assert.equal(pr.next, 11, "probing does not move next");
  assert.equal(pr.inflights.count, 0, "probes are not counted in the window");
  pr.probeAnswered();
  assert.equal(pr.isPaused(), false);
});

Deno.test("probe → replicate once the follower acknowledges a match; appends then pipeline up to the window", () => {
  const pr = new FollowerProgress(2, 11, 2);
  assert.equal(pr.maybeUpdate(10), true);
  assert.equal(pr.match, 10);
  pr.becomeReplicate();
  assert.equal(pr.state, "replicate");
  assert.equal(pr.next, 11);
  pr.appendSent(15);
  assert.equal(pr.next, 16, "next moves past what is in flight");
  assert.equal(pr.isPaused(), false);
  pr.appendSent(20);
  assert.equal(pr.isPaused(), true, "window of 2 full");
  pr.appendSent(null); // an empty append (a commit update) takes no slot
  assert.equal(pr.inflights.count, 2);
  assert.equal(pr.maybeUpdate(15), true);
  pr.inflights.freeTo(pr.match);
  assert.equal(pr.isPaused(), false);
  assert.equal(pr.maybeUpdate(12), false, "an older acknowledgement is no news");
  assert.equal(pr.match, 15);
});

Deno.test("acknowledging beyond next moves next past the match", () => {
  const pr = new FollowerProgress(2, 5, 2);
  assert.equal(pr.maybeUpdate(9), true);
  assert.equal(pr.next, 10);
});

Deno.test("replicate → probe on a rejection: stale rejections are ignored, genuine ones back off within bounds", () => {
  const pr = new FollowerProgress(2, 1, 4);
  pr.maybeUpdate(10);
  pr.becomeReplicate();
  pr.appendSent(20);
  assert.equal(pr.isStaleRejection(10), true, "a rejection at or below match is stale");
  assert.equal(pr.isStaleRejection(11), false);
  pr.backOff(18, 14);
  assert.equal(pr.state, "probe");
  assert.equal(pr.next, 14, "the hint is taken when it lies within (match, rejected]");
  assert.equal(pr.inflights.count, 0, "the window is forgotten");
  assert.equal(pr.isStaleRejection(12), true, "in probe only the append just sent can be rejected");
  assert.equal(pr.isStaleRejection(13), false);
  assert.equal(pr.isStaleRejection(20), true, "nor one beyond it");
  pr.backOff(13, 2);
  assert.equal(pr.next, 11, "never at or below match");
  pr.backOff(10, 40);
  assert.equal(pr.next, 11, "match + 1 wins over a rejected index below it");
  pr.becomeReplicate();
  pr.backOff(30, 40);
  assert.equal(pr.next, 30, "never beyond the rejected index");
});

Deno.test("§7 snapshot: appends pause until the snapshot is reported, then probing resumes after it", () => {
  const pr = new FollowerProgress(2, 1, 4);
  pr.maybeUpdate(3);
  pr.becomeReplicate();
  pr.appendSent(8);
  pr.becomeSnapshot(50);
  assert.equal(pr.state, "snapshot");
  assert.equal(pr.pendingSnapshot, 50);
  assert.equal(pr.inflights.count, 0);
  assert.equal(pr.isPaused(), true);
  assert.equal(pr.isStaleRejection(100), true, "rejections mean nothing while a snapshot is out");
  assert.throws(() => pr.appendSent(null), AssertionError);
  pr.snapshotFinished(true);
  assert.equal(pr.state, "probe");
  assert.equal(pr.next, 51, "probe from just after the snapshot");
  assert.equal(pr.pendingSnapshot, 0);
  assert.equal(pr.isPaused(), true, "and wait for the follower's answer first");
});

Deno.test("a failed snapshot goes back to probing from just after match, at once", () => {
  const pr = new FollowerProgress(2, 1, 4);
  pr.maybeUpdate(3);
  pr.becomeSnapshot(50);
  pr.snapshotFinished(false);
  assert.equal(pr.state, "probe");
  assert.equal(pr.next, 4);
  assert.equal(pr.isPaused(), false);
  assert.throws(() => pr.snapshotFinished(true), AssertionError, "only from snapshot state");
});

Deno.test("thesis §6.2: a follower counts as recently active until an election timeout passes unheard", () => {
  const pr = new FollowerProgress(2, 1, 4);
  assert.equal(pr.recentActive, false);
  pr.markRecentActive();
  for (let t = 1; t < 5; t++) {
    pr.tick(5);
    assert.equal(pr.recentActive, true, `tick ${t}`);
  }
  pr.tick(5);
  assert.equal(pr.recentActive, false);
  assert.equal(pr.lastHeardTicks, 5);
  pr.heard();
  assert.equal(pr.recentActive, true);
  assert.equal(pr.lastHeardTicks, 0);
});

Deno.test("the tracker keeps members in the order added, reports them by id, and resizes every window", () => {
  const tracker = new ProgressTracker();
  assert.throws(() => tracker.add(2, 1), AssertionError, "needs a window size first");
  tracker.setMaxInflight(2);
  tracker.add(5, 8);
  const three = tracker.add(3, 8);
  assert.throws(() => tracker.add(3, 8), AssertionError);
  assert.deepEqual([...tracker.values()].map((p) => p.id), [5, 3]);
  three.maybeUpdate(7);
  three.becomeReplicate();
  three.appendSent(9);
  tracker.setMaxInflight(1);
  assert.equal(three.inflights.full(), true);
  tracker.tick(10);
  const view = tracker.view([1, 3]);
  assert.deepEqual(view.map((p) => [p.id, p.isLearner, p.state, p.matchIndex, p.nextIndex]), [
    [3, false, "replicate", 7, 10],
    [5, true, "probe", 0, 8],
  ]);
  assert.equal(view[0]!.inflight, 1);
  assert.equal(view[0]!.lastHeardTicks, 1);
  tracker.delete(5);
  assert.deepEqual(tracker.ids(), [3]);
});
