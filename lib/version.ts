/** pgraft's version, shown by `pgraft version` and in /status. */
export const VERSION = "0.1.0";
