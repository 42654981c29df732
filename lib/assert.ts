/**
 * Invariant assertions. They stay on in production: an assertion failure is a
 * bug in pgraft and must crash the agent loudly rather than let it go on with a
 * corrupted view of the cluster. Bad input from outside never reaches these:
 * it is validated where it enters and answered with a specific error.
 *
 * @module
 */

/** Thrown when an internal invariant does not hold. Never caught on purpose. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/**
 * Assert that `condition` holds.
 *
 * @param condition what must be true
 * @param message what was violated (evaluated lazily when a function)
 * @example
 * ```ts
 * assert(1 + 1 === 2, "arithmetic");
 * ```
 */
export function assert(
  condition: unknown,
  message: string | (() => string) = "assertion failed",
): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === "function" ? message() : message);
  }
}

/** Assert that a value is unreachable (exhaustive switch). */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`unreachable ${what}: ${JSON.stringify(value)}`);
}
