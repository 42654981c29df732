/**
 * The pgraft agent: wires the Raft core, storage, transport and control.
 *
 * @module
 */

export { Agent, type AgentOptions, type PeerAddress } from "./agent.ts";
export { AgentStoppingError, Driver, ProposalLostError } from "./driver.ts";
export { CommandError, KV_KEY_BYTES_MAX, KV_VALUE_BYTES_MAX } from "./commands.ts";
export { type LogFormat, Logger } from "./log.ts";
