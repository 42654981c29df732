/**
 * The one set of helpers every wait in pgraft goes through: {@link sleep},
 * {@link deadline} (a promise with a time limit), {@link retry} (again after a
 * bounded delay while an error says "try later") and {@link poll} (until a
 * condition holds, bounded). Each wait is bounded in time; none swallows an
 * error it was not asked to.
 *
 * @module
 */

/** A wait ran out of time; the message names what was waited for. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/**
 * Resolve after `ms` milliseconds (or at once when `signal` aborts).
 *
 * @param ms how long to wait
 * @param signal stops the wait early (resolving, not rejecting)
 * @example
 * ```ts
 * const started = Date.now();
 * await sleep(5);
 * // Date.now() - started >= 5
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * `promise`, or a {@link TimeoutError} naming `what` once `ms` have passed.
 * The timer is cleared either way; `promise` itself is not cancelled.
 *
 * @param promise what to wait for
 * @param ms the time limit
 * @param what what is waited for, for the error message ("the change to be applied")
 * @returns the promise's value
 * @throws TimeoutError after `ms`, or whatever `promise` rejects with
 * @example
 * ```ts
 * const value = await deadline(Promise.resolve(1), 100, "one");
 * // value === 1
 * ```
 */
export async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeoutError(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@link retry}. */
export interface RetryOptions {
  /** whether an error means "try again later"; others are rethrown at once */
  retryable: (error: unknown) => boolean;
  /**
   * delays between attempts; the last one repeats
   * @default [10, 20, 50, 100, 200, 500]
   */
  delaysMs?: readonly number[];
  /**
   * attempts at most (then the last error is thrown)
   * @default Infinity (bounded by `signal` or by the caller's own stop)
   */
  attemptsMax?: number;
  /** stop retrying (the last error is thrown) */
  signal?: AbortSignal;
  /** called after each failed attempt that will be retried (attempt counts from 1) */
  onRetry?: (error: unknown, attempt: number) => void;
}

/** The default back-off of {@link retry}: bounded growth. */
export const RETRY_DELAYS_MS: readonly number[] = [10, 20, 50, 100, 200, 500];

/**
 * Run `fn` until it succeeds, waiting between attempts while its error is
 * retryable.
 *
 * @param fn the attempt
 * @param options which errors to retry, delays, bounds
 * @returns the first successful result
 * @throws the first non-retryable error, or the last error once out of attempts or aborted
 * @example
 * ```ts
 * let calls = 0;
 * const n = await retry(() => ++calls < 3 ? Promise.reject(new Error("busy")) : Promise.resolve(calls), {
 *   retryable: () => true,
 *   delaysMs: [1],
 * });
 * // n === 3
 * ```
 */
export async function retry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const delays = options.delaysMs ?? RETRY_DELAYS_MS;
  const attemptsMax = options.attemptsMax ?? Infinity;
  for (let attempt = 1;; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (!options.retryable(error) || attempt >= attemptsMax || options.signal?.aborted) {
        throw error;
      }
      options.onRetry?.(error, attempt);
      await sleep(delays[Math.min(attempt - 1, delays.length - 1)] ?? 0, options.signal);
    }
  }
}

/** Options of {@link poll}. */
export interface PollOptions {
  /** give up after this long */
  timeoutMs: number;
  /** what is waited for, for the error message */
  what: string;
  /**
   * time between checks
   * @default 10
   */
  intervalMs?: number;
  /** treat a check that throws as "not yet" (the last error goes in the message). @default false */
  ignoreErrors?: boolean;
  /** stop early (throws the TimeoutError at once) */
  signal?: AbortSignal;
}

/**
 * Check until `check` returns something truthy, at most `timeoutMs`.
 *
 * @param check returns the awaited value, or a falsy value for "not yet"
 * @param options the bound and what is waited for
 * @returns the first truthy value
 * @throws TimeoutError naming `what` (and the last error of a check, with `ignoreErrors`)
 * @example
 * ```ts
 * let n = 0;
 * const value = await poll(() => ++n >= 3 && n, { timeoutMs: 1000, what: "three checks", intervalMs: 1 });
 * // value === 3
 * ```
 */
export async function poll<T>(
  check: () =>
    | T
    | null
    | undefined
    | false
    | 0
    | ""
    | Promise<T | null | undefined | false | 0 | "">,
  options: PollOptions,
): Promise<T> {
  const until = performance.now() + options.timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      if (!options.ignoreErrors) throw error;
      lastError = error;
    }
    if (performance.now() >= until || options.signal?.aborted) {
      const cause = lastError === null ? "" : ` (last error: ${String(lastError)})`;
      throw new TimeoutError(
        `timed out after ${options.timeoutMs} ms waiting for ${options.what}${cause}`,
      );
    }
    await sleep(
      Math.min(options.intervalMs ?? 10, Math.max(0, until - performance.now())),
      options.signal,
    );
  }
}
