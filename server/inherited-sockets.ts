// Listening sockets handed to the server by its supervisor, systemd's socket
// activation protocol (sd_listen_fds(3)): LISTEN_PID is our pid, LISTEN_FDS
// sockets start at fd 3, LISTEN_FDNAMES names them (FileDescriptorName= in
// the .socket unit). The supervisor keeps its own copy of each socket, so it
// stays open across a restart of the server: agents that connect while the
// server is down wait in the kernel's accept queue (and retransmit their SYN
// when it is full) instead of being refused and backing off, and the next
// server takes them up as soon as it listens.

/** The first inherited descriptor (SD_LISTEN_FDS_START). */
const FIRST_FD = 3;

/** The name of the socket the agent listener takes (FileDescriptorName=agent). */
export const AGENT_SOCKET_NAME = "agent";

/**
 * The sockets passed to this process, by name, and what was wrong with the
 * variables if anything. The variables are removed from env (as
 * sd_listen_fds(3) does with unset_environment), so that no child process
 * or worker thread (whose process.env is a copy) takes them for its own.
 */
export function inheritedSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid): { sockets: Map<string, number>; problem?: string } {
  const sockets = new Map<string, number>();
  const { LISTEN_PID: listenPid, LISTEN_FDS: listenFds, LISTEN_FDNAMES: names } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  // Only sockets meant for this process, as sd_listen_fds(3): without LISTEN_PID
  // (a stray LISTEN_FDS) or with another pid (a parent that passed its
  // environment on), descriptor 3 is not ours to listen on.
  if (listenFds === undefined || listenPid !== String(pid)) return { sockets };
  const count = Number(listenFds);
  if (!/^\d+$/.test(listenFds) || count > 64) return { sockets, problem: `LISTEN_FDS=${listenFds} is not a count of sockets` };
  const named = names === undefined ? [] : names.split(":");
  if (names !== undefined && named.length !== count) return { sockets, problem: `LISTEN_FDNAMES names ${named.length} sockets, LISTEN_FDS says ${count}` };
  for (let i = 0; i < count; i++) {
    const name = named[i] ?? `fd${FIRST_FD + i}`;
    if (sockets.has(name)) return { sockets: new Map(), problem: `LISTEN_FDNAMES names two sockets "${name}"` };
    sockets.set(name, FIRST_FD + i);
  }
  return { sockets };
}

/**
 * The agent listener's socket among the inherited ones: the one named
 * "agent", or the only one whatever its name (systemd names a socket after
 * its unit when FileDescriptorName= is not set).
 */
export function agentSocket(sockets: ReadonlyMap<string, number>): number | undefined {
  return sockets.get(AGENT_SOCKET_NAME) ?? (sockets.size === 1 ? [...sockets.values()][0] : undefined);
}
