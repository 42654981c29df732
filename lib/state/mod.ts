/**
 * The replicated state machine (pure, no I/O): the command codec, the rules
 * for keys, values and member addresses, and {@link StateMachine} with its
 * change feed and snapshots.
 *
 * @module
 */

export {
  type Command,
  type CommandOp,
  compareCodePoints,
  decodeCommand,
  encodeCommand,
  prefixUpperBound,
  TIMELINE_MAX,
} from "./commands.ts";
export {
  encodeMemberContext,
  KV_KEY_BYTES_MAX,
  KV_LIST_LIMIT_MAX,
  KV_QUOTA_BYTES_DEFAULT,
  KV_QUOTA_SETTING,
  KV_VALUE_BYTES_MAX,
  type KvGrowth,
  kvKeyProblem,
  kvListLimitProblem,
  kvQuotaProblem,
  kvValueProblem,
  MEMBER_ADDRESS_CHARS_MAX,
  MEMBER_ADDRESS_PATTERN,
  MEMBER_PORT_MAX,
  type MemberAddress,
  memberAddressProblem,
  parseKvQuotaSetting,
  parseMemberContext,
  type Problem,
  utf8Length,
} from "./limits.ts";
export {
  type Change,
  CHANGE_BATCH_MAX,
  CHANGE_FEED_KEY_CHARS_MAX,
  CHANGE_FEED_RECORDS_MAX,
  type ChangeBatch,
  type ChangeFeedOptions,
  type ChangeKind,
} from "./change_feed.ts";
export { type Member, type PrimaryRecord, STATE_IMAGE_VERSION } from "./snapshot.ts";
export {
  type ApplyErrorCode,
  type ApplyOp,
  type ApplyResult,
  type KvListOptions,
  type KvPair,
  StateMachine,
  type StateMachineOptions,
} from "./state_machine.ts";
