/**
 * The pgraft agent: the node around the Raft core. {@link Agent} wires the
 * replica (core, storage, Ready loop), the peers, the operations, the HTTP
 * API and the PostgreSQL publisher and command queue.
 *
 * @module
 */

export { Agent, type AgentOptions } from "./agent.ts";
export { type LogFormat, Logger } from "./log.ts";
