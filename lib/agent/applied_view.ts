/**
 * The agent's view of the applied state machine: members, cluster settings
 * and the cluster's identity as the log left them, and the effective settings
 * (the configuration file overlaid with the cluster's). It is reloaded after
 * every applied entry that changes them; {@link AppliedView.settled} resolves
 * once the view reflects everything applied so far.
 *
 * @module
 */

import type { LoadedConfig, PgraftSettings } from "../config/mod.ts";
import type { AppliedState, KvPair, RaftStorage } from "../storage/mod.ts";
import { effectiveSettings } from "./settings.ts";

/** Called after a reload with the settings before and after it. */
export type SettingsListener = (before: PgraftSettings, after: PgraftSettings) => void;

/** The applied state and the effective settings. */
export class AppliedView {
  readonly #storage: RaftStorage;
  readonly #config: LoadedConfig;
  readonly #onInvalidSetting: (name: string, error: Error) => void;
  #state: AppliedState;
  #settings: PgraftSettings;
  #reloading: Promise<void> = Promise.resolve();
  #listeners: SettingsListener[] = [];

  private constructor(
    storage: RaftStorage,
    config: LoadedConfig,
    state: AppliedState,
    onInvalidSetting: (name: string, error: Error) => void,
  ) {
    this.#storage = storage;
    this.#config = config;
    this.#state = state;
    this.#onInvalidSetting = onInvalidSetting;
    this.#settings = effectiveSettings(config, state.settings, onInvalidSetting);
  }

  /** Load the view from storage. */
  static async load(
    storage: RaftStorage,
    config: LoadedConfig,
    onInvalidSetting: (name: string, error: Error) => void,
  ): Promise<AppliedView> {
    return new AppliedView(storage, config, await storage.appliedState(), onInvalidSetting);
  }

  /** Members, cluster settings and identity as last loaded. */
  get state(): AppliedState {
    return this.#state;
  }

  /** The effective settings. */
  get settings(): PgraftSettings {
    return this.#settings;
  }

  /** Be told when a reload changed the settings. */
  onSettings(listener: SettingsListener): void {
    this.#listeners.push(listener);
  }

  /** Reload after an applied change; reloads run one after another. */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.catch(() => {}).then(async () => {
      this.#state = await this.#storage.appliedState();
      const before = this.#settings;
      this.#settings = effectiveSettings(
        this.#config,
        this.#state.settings,
        this.#onInvalidSetting,
      );
      for (const listener of this.#listeners) listener(before, this.#settings);
    });
    return this.#reloading;
  }

  /** Resolves when the view reflects everything applied so far. */
  settled(): Promise<void> {
    return this.#reloading;
  }

  kvGet(key: string): Promise<KvPair | null> {
    return this.#storage.kvGet(key);
  }

  kvList(prefix: string, limit: number): Promise<KvPair[]> {
    return this.#storage.kvList(prefix, limit);
  }
}
