import { fsyncSync } from "node:fs";
import { PGlite, type PGliteOptions } from "@electric-sql/pglite";
import { NodeFS } from "@electric-sql/pglite/nodefs";

// PGlite on disk, durable: a commit it acknowledges has reached the disk.
//
// Why this is needed: out of the box PGlite on Node never syncs. It starts
// PostgreSQL with -F (fsync=off), and even with fsync on, its Emscripten
// file system drops the syncs: fdatasync() is a no-op there, and fsync()
// calls the file system's stream_ops.fsync, which NODEFS does not define.
// Writes then survive a crash of the process (they are in the OS page cache)
// but not a crash of the machine or a power cut; "acknowledged writes are
// never lost" needs both.
//
// So: fsync=on, WAL synced with fsync() (wal_sync_method=fsync, since
// fdatasync() goes nowhere), and NODEFS given an fsync that syncs the host
// file. A failed sync surfaces as the errno PostgreSQL expects, and
// PostgreSQL then does what it does on any host: it stops rather than carry
// on with data it cannot vouch for.
//
// Cost, measured on this machine: ~0.2 ms per fsync; a group-commit batch
// commits once, so it is one sync per batch, not per heartbeat.
//
// The WAL, which PGlite manages with no background process: every segment
// file (16 MB) is created in the foreground by the commit that needs it, and
// every checkpoint is run by the statement that crosses max_wal_size.
// - wal_init_zero=off: PostgreSQL fills a new segment with zeros before using
//   it (16 MB written and synced through the Emscripten file system). In a
//   10,000-agent benchmark at 1,000 heartbeats/s a segment filled every ~30 s,
//   and the second whose commit created it was the run's one stalled second
//   (p99 128-132 ms in three runs, at the very moment the file appeared);
//   without the zeros that second looked like the others (no second over
//   40 ms in 90). The zeros only reserve blocks in advance: WAL records carry
//   CRCs, so recovery finds the end of the log either way, and every commit
//   is still synced with fsync() (metadata included).
// - max_wal_size=256MB (PostgreSQL's default is 1 GB): the checkpoint that
//   the limit triggers writes at most shared_buffers of dirty pages (32 MB,
//   ./pglite-worker.ts), and 7-19 ms with a 10,000-machine fleet; a smaller
//   limit bounds the WAL on disk and the replay after a crash. Checkpoints
//   recycle old segments, so after the first one few are created at all.
const WAL_PARAMS = ["-c", "wal_init_zero=off", "-c", "max_wal_size=256MB"];

interface SyncableStream {
  nfd?: number;
}
interface NodeFsType {
  stream_ops: { fsync?: (stream: SyncableStream) => number };
  tryFSOperation<T>(f: () => T): T;
}

/** Syncs of host files done for PGlite in this thread (tests read it). */
export const pgliteSyncs = { count: 0 };

function makeDurable(nodefs: NodeFsType): void {
  nodefs.stream_ops.fsync = (stream) => {
    // Directories are opened too (PostgreSQL syncs a directory after creating
    // a file in it), so every stream has a host descriptor.
    if (stream.nfd !== undefined) {
      nodefs.tryFSOperation(() => fsyncSync(stream.nfd!));
      pgliteSyncs.count++;
    }
    return 0;
  };
}

/** NodeFS whose NODEFS syncs; installed before PostgreSQL starts (preRun). */
class DurableNodeFS extends NodeFS {
  override async init(pg: PGlite, opts: Parameters<NodeFS["init"]>[1]): ReturnType<NodeFS["init"]> {
    const { emscriptenOpts } = await super.init(pg, opts);
    return {
      emscriptenOpts: {
        ...emscriptenOpts,
        preRun: [...(emscriptenOpts.preRun ?? []), (mod) => makeDurable(mod.NODEFS as unknown as NodeFsType)],
      },
    };
  }
}

/**
 * PGlite options for a database in dataDir that syncs what it commits;
 * `startParams` are added to PGlite's own (which this drops -F from).
 */
export function durablePGliteOptions(dataDir: string, startParams: readonly string[] = []): PGliteOptions {
  return {
    fs: new DurableNodeFS(dataDir),
    startParams: [...PGlite.defaultStartParams.filter((p) => p !== "-F"), "-c", "fsync=on", "-c", "wal_sync_method=fsync", ...WAL_PARAMS, ...startParams],
  };
}
