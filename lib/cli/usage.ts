/** Usage texts, one per command; `--help` prints them, a bad invocation prints them to stderr with exit 2. */

export const MAIN_USAGE = `pgraft — a Raft consensus agent beside each PostgreSQL server

Usage:
  pgraft run --config FILE [--pg-url URL] [--log-format json|text]
                                        run the agent (SIGTERM: a leader hands over first)
  pgraft dev [--nodes 3] [--dir DIR]    a local cluster: PostgreSQL servers + agents
  pgraft config --config FILE [--json]  effective pgraft settings with their source file and line
  pgraft migrate --config FILE [--pg-url URL]
                                        apply the control schema migrations only
  pgraft status --config FILE [--pg-url URL] [--json]
                                        the cluster as this node sees it
  pgraft version                        print the version

Run "pgraft COMMAND --help" for a command's options.
`;

export const COMMAND_USAGE: Record<string, string> = {
  run: `Usage: pgraft run --config FILE [--pg-url URL] [--log-format json|text]

Run the pgraft agent beside the PostgreSQL server that FILE configures.
  --config FILE       postgresql.conf with the pgraft.* settings (required)
  --pg-url URL        connect to the local PostgreSQL with this URL instead
  --log-format F      json (one object per line, default) or text
On SIGTERM or SIGINT a leader first hands leadership to the most caught-up follower.
`,
  dev: `Usage: pgraft dev [--nodes N] [--dir DIR]

Start a local cluster: N PostgreSQL servers (default 3) under DIR (default .pgraft-dev/),
one agent each, bootstrapped; prints a psql line per node. Ctrl+C stops everything.
`,
  config: `Usage: pgraft config --config FILE [--json]

Print the effective pgraft settings: name, setting, unit, source, sourcefile, sourceline.
  --json              print a JSON array instead of a table
A bad file exits 1 naming file:line.
`,
  migrate: `Usage: pgraft migrate --config FILE [--pg-url URL]

Apply the control schema migrations to the PostgreSQL server that FILE configures.
`,
  status: `Usage: pgraft status --config FILE [--pg-url URL] [--json]

Show the cluster as this node's agent sees it.
`,
  version: `Usage: pgraft version

Print pgraft's version.
`,
};
