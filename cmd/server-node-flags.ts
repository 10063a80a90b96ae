// The Node flags bmaas-server runs with. Its shebang carries them (a test
// checks that it matches), `npm start` and the benchmark pass them, so every
// way of starting the server gets the same heap.
//
// --max-semi-space-size=32 (MB; Node 20's default is 16): a young generation
// large enough that a heartbeat's garbage dies in it. With the default, a
// 10,000-agent server doing 1,000 heartbeats/s scavenged every 0.15-0.45 s and
// promoted 2-5 MB each time: objects that live a few milliseconds but happen to
// be in flight at two scavenges in a row (streams, queued heartbeats, pg
// results). That promoted garbage grew the old generation from ~110 MB to
// ~370 MB between major GCs, which was most of the server's steady RSS growth.
// Measured (10,000 agents at 1,000/s for 60 s, RSS steady max): PostgreSQL
// 992 MiB with the default, 787 with 32, 828 with 64; PGlite 1,036, 955 with
// 32, 1,020 with 64, 1,210 with 128 (a larger young generation is RSS too).
// The young generation grows to this size only under load; an idle server
// does not pay for it.
//
// Rejected: --heap-growing-percent=50 (major GCs sooner) gave 721 MiB but a
// 26 ms p99 and a slower connect storm: collecting the garbage costs more
// than not making old garbage.
export const SERVER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32"];

/** The shebang line of cmd/bmaas-server.ts: node with SERVER_NODE_FLAGS. */
export const SERVER_SHEBANG = `#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(" ")}`;
