/**
 * pgraft's configuration: the `pgraft.*` settings of postgresql.conf, read
 * with PostgreSQL's own rules (comments, quotes and escapes, `include`,
 * `include_dir`, `include_if_exists`, later lines win, `postgresql.auto.conf`
 * last, units), with typed values, where each came from, and the local
 * server's connection settings.
 *
 * @example
 * ```ts ignore
 * import { loadConfig } from "./mod.ts";
 * const config = await loadConfig("/var/lib/postgresql/data/postgresql.conf");
 * for (const warning of config.warnings) console.error(warning);
 * console.log(config.settings.electionTimeoutMs);
 * ```
 *
 * @module
 */

export {
  AUTO_CONF_NAME,
  compareBytes,
  ConfigError,
  ELECTION_HEARTBEAT_RATIO_ADVISED,
  ELECTION_HEARTBEAT_RATIO_MIN,
  firstListEntry,
  INCLUDE_DEPTH_MAX,
  loadConfig,
  type LoadedConfig,
  type LocalServerSettings,
  type PgraftSettings,
  type SettingEntry,
} from "./loader.ts";
export { type ConfigLine, ConfigSyntaxError, parseConfigText } from "./parser.ts";
export {
  findSetting,
  levenshtein,
  type ParsedSetting,
  parseSettingValue,
  REQUIRED_SETTINGS,
  SECRET_MASK,
  SETTING_PREFIX,
  SETTINGS,
  type SettingScope,
  type SettingSpec,
  type SettingType,
  unknownSettingMessage,
} from "./settings.ts";
export {
  DURATION_UNITS_MS,
  MEMORY_UNITS_BYTES,
  parseBoolean,
  parseBytes,
  parseDuration,
  parseInteger,
} from "./units.ts";
