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
//
// --no-allocation-site-pretenuring: V8 learns per allocation site whether its
// objects live long, and then allocates that site's objects straight into the
// old generation. While 10,000 agents connect, heartbeats wait seconds for
// handshakes and the database, so the sites of the heartbeat path (the call,
// its HTTP/2 stream, the response, the pg rows) were learnt as long-lived; in
// the steady state after it, every heartbeat's garbage then went to the old
// generation. Measured (PostgreSQL, 10,000 agents at 1,000/s, 60 s, objects
// that survived young-generation GCs): 108 MB promoted a minute with
// pretenuring, 10-20 MB without. Promoted garbage is what fills the old
// generation, and each major GC of a 115 MB live heap stops the server for
// 30-115 ms: the stalled seconds of a steady run (p99 100-190 ms in the
// seconds with one, every ~10 s in some runs). Back to back (200 agents) the
// change was within the runs' noise (PostgreSQL 6,564-7,665/s with it,
// 6,020-6,674/s without; PGlite 5,491-6,120 against 5,770-6,653).
export const SERVER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32", "--no-allocation-site-pretenuring"];

/** The shebang line of cmd/bmaas-server.ts: node with SERVER_NODE_FLAGS. */
export const SERVER_SHEBANG = `#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(" ")}`;
