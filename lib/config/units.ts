/**
 * Value forms of postgresql.conf: numbers with units (durations and memory
 * sizes) and booleans, parsed with PostgreSQL's rules (`parse_int`,
 * `parse_bool` in guc.c). These helpers throw a plain `TypeError` (the text is
 * not of the expected form) or `RangeError` (the unit is unknown or the number
 * is too large); callers add the setting's name.
 *
 * @module
 */

/** Milliseconds per duration unit (PostgreSQL's time units; case-sensitive like PostgreSQL). */
export const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Bytes per memory unit (PostgreSQL's memory units; case-sensitive like PostgreSQL). */
export const MEMORY_UNITS_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};

/** A number and the unit letters written right after it (`"1.5s"` → `{ number: 1.5, unit: "s" }`). */
export interface NumberWithUnit {
  number: number;
  unit: string;
  /** true when the number had a fraction or an exponent */
  fractional: boolean;
}

const NUMBER_WITH_UNIT =
  /^([+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))\s*([A-Za-z]*)$/;

/**
 * Split `raw` (surrounding white space allowed) into a number and its unit.
 *
 * @param raw the text, e.g. `"100ms"`, `" 1.5 s "`, `"0x10"`
 * @returns the number and unit (`""` when none)
 * @throws {TypeError} when `raw` is not a number optionally followed by unit letters
 * @example
 * ```ts
 * const { number, unit } = splitNumberAndUnit("90ms");
 * if (number !== 90 || unit !== "ms") throw new Error();
 * ```
 */
export function splitNumberAndUnit(raw: string): NumberWithUnit {
  const match = NUMBER_WITH_UNIT.exec(raw.trim());
  if (!match) throw new TypeError(`not a number: "${raw}"`);
  const text = match[1]!;
  const unit = match[2]!;
  const hex = /^[+-]?0[xX]/.test(text);
  const number = hex
    ? (text.startsWith("-") ? -1 : 1) * Number.parseInt(text.replace(/^[+-]?0[xX]/, ""), 16)
    : Number(text);
  if (!Number.isFinite(number)) throw new TypeError(`not a number: "${raw}"`);
  return { number, unit, fractional: !hex && /[.eE]/.test(text) };
}

/**
 * Round half to even, like C's `rint()` which PostgreSQL uses for fractional
 * values of integer settings.
 */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function scaled(raw: string, units: Readonly<Record<string, number>>, defaultUnit: string): number {
  const { number, unit } = splitNumberAndUnit(raw);
  const factor = units[unit === "" ? defaultUnit : unit];
  if (factor === undefined) {
    const valid = Object.keys(units).map((u) => `"${u}"`).join(", ");
    throw new RangeError(`unknown unit "${unit}" (valid units are ${valid})`);
  }
  const value = roundHalfEven(number * factor);
  if (!Number.isSafeInteger(value)) throw new RangeError(`value out of range: "${raw}"`);
  return value === 0 ? 0 : value; // no -0
}

/**
 * Parse a duration into whole milliseconds. No unit means milliseconds;
 * fractions are rounded to the nearest millisecond (half to even, like
 * PostgreSQL). The sign is kept: range checks belong to the caller.
 *
 * @param raw e.g. `"100"`, `"90ms"`, `"1.5s"`, `"2 min"`, `"1500us"`
 * @returns whole milliseconds
 * @throws {TypeError} when `raw` is not a number with an optional unit
 * @throws {RangeError} for an unknown unit or a result beyond a safe integer
 * @example
 * ```ts
 * if (parseDuration("1.5s") !== 1500) throw new Error();
 * ```
 */
export function parseDuration(raw: string): number {
  return scaled(raw, DURATION_UNITS_MS, "ms");
}

/**
 * Parse a memory size into bytes. No unit means bytes; `kB` is 1024 bytes.
 *
 * @param raw e.g. `"512"`, `"64kB"`, `"1.5MB"`, `"2GB"`
 * @returns whole bytes
 * @throws {TypeError} when `raw` is not a number with an optional unit
 * @throws {RangeError} for an unknown unit or a result beyond a safe integer
 * @example
 * ```ts
 * if (parseBytes("64kB") !== 65536) throw new Error();
 * ```
 */
export function parseBytes(raw: string): number {
  return scaled(raw, MEMORY_UNITS_BYTES, "B");
}

/**
 * Parse an integer: decimal or `0x` hexadecimal, optional sign, surrounding
 * white space allowed. Fractions and units are rejected.
 *
 * @param raw e.g. `"512"`, `"-3"`, `"0x200"`
 * @returns the integer
 * @throws {TypeError} when `raw` is not an integer
 * @example
 * ```ts
 * if (parseInteger("0x200") !== 512) throw new Error();
 * ```
 */
export function parseInteger(raw: string): number {
  let parsed: NumberWithUnit;
  try {
    parsed = splitNumberAndUnit(raw);
  } catch {
    throw new TypeError(`not an integer: "${raw}"`);
  }
  if (parsed.unit !== "" || parsed.fractional || !Number.isSafeInteger(parsed.number)) {
    throw new TypeError(`not an integer: "${raw}"`);
  }
  return parsed.number === 0 ? 0 : parsed.number;
}

const BOOLEAN_WORDS: readonly [string, boolean][] = [
  ["true", true],
  ["false", false],
  ["yes", true],
  ["no", false],
  ["on", true],
  ["off", false],
];

/**
 * Parse a boolean like PostgreSQL's `parse_bool`: `on`, `off`, `true`,
 * `false`, `yes`, `no`, `1`, `0`, case-insensitive, and any prefix of those
 * words that names only one of them (`t`, `f`, `y`, `n`, `of`); `o` is
 * ambiguous and rejected.
 *
 * @param raw the text
 * @returns the boolean
 * @throws {TypeError} when `raw` is not a boolean or is an ambiguous prefix
 * @example
 * ```ts
 * if (parseBoolean("Yes") !== true || parseBoolean("of") !== false) throw new Error();
 * ```
 */
export function parseBoolean(raw: string): boolean {
  const text = raw.trim().toLowerCase();
  if (text === "1") return true;
  if (text === "0") return false;
  if (text.length === 0) throw new TypeError(`not a boolean: "${raw}"`);
  const matches = BOOLEAN_WORDS.filter(([word]) => word.startsWith(text));
  const first = matches[0];
  if (first === undefined || matches.some(([, value]) => value !== first[1])) {
    throw new TypeError(`not a boolean: "${raw}"`);
  }
  return first[1];
}

/**
 * Show a size in bytes with the largest unit that divides it evenly, as
 * PostgreSQL shows memory settings.
 *
 * @example
 * ```ts
 * if (formatBytes(64 * 1024 * 1024) !== "64MB" || formatBytes(1000) !== "1000B") throw new Error();
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = Object.entries(MEMORY_UNITS_BYTES).sort(([, a], [, b]) => b - a);
  for (const [unit, factor] of units) {
    if (bytes !== 0 && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
