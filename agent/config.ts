import { Option, type Command } from "commander";
import { validate as isUuid } from "uuid";
import { booleanOption, numberArg, secondsArg } from "../lib/flags.js";

/** Flags of `bmaas-agent run`, each with an environment fallback. */
export interface AgentRunFlags {
  server?: string;
  machineId?: string;
  key?: string;
  cert?: string;
  ca?: string;
  insecure?: boolean;
  once?: boolean;
  installer?: string;
  installerTimeout: number;
  rebootCommand?: string;
  stateDir: string;
  interval: number;
  jitter: number;
  procRoot: string;
  sysRoot: string;
  logLevel: string;
}

// Seconds flags become setTimeout delays, which Node caps at 2^31-1 ms: a
// larger one would fire after 1 ms, a tight loop. So they are capped here.

export const AgentConfig = {
  registerRunFlags(cmd: Command): Command {
    return cmd
      .addOption(new Option("--server <host:port>", "agent listener of bmaas-server").env("BMAAS_AGENT_SERVER"))
      .addOption(new Option("--machine-id <uuid>", "this machine's ID").env("BMAAS_AGENT_MACHINE_ID"))
      .addOption(new Option("--key <file>", "Ed25519 private key (bmaas-agent keygen)").env("BMAAS_AGENT_KEY"))
      .addOption(
        new Option("--cert <file>", "client certificate for --key (PEM, leaf first, intermediates after), e.g. from an enrollment CA; default: ephemeral self-signed").env(
          "BMAAS_AGENT_CERT",
        ),
      )
      .addOption(new Option("--ca <file>", "CA to verify the server with").env("BMAAS_AGENT_CA"))
      .addOption(booleanOption("--insecure", "do not verify the server (labs only)", "BMAAS_AGENT_INSECURE"))
      .addOption(new Option("--once", "one heartbeat cycle, then exit (0 on success, else the gRPC status code)"))
      .addOption(new Option("--installer <command>", "run for an installation request (request JSON on stdin)").env("BMAAS_AGENT_INSTALLER"))
      .addOption(
        new Option("--installer-timeout <seconds>", "installer time limit").env("BMAAS_AGENT_INSTALLER_TIMEOUT").argParser(secondsArg(1)).default(3600),
      )
      .addOption(new Option("--reboot-command <command>", "run after a successful installation was reported").env("BMAAS_AGENT_REBOOT_COMMAND"))
      .addOption(new Option("--state-dir <dir>", "where handled installation generations are kept").env("BMAAS_AGENT_STATE_DIR").default("/var/lib/bmaas-agent"))
      .addOption(new Option("--interval <seconds>", "heartbeat interval (a server suggestion wins)").env("BMAAS_AGENT_INTERVAL").argParser(secondsArg(0.1)).default(30))
      .addOption(new Option("--jitter <fraction>", "± this fraction of the interval").env("BMAAS_AGENT_JITTER").argParser(numberArg({ min: 0, max: 1 })).default(0.1))
      .addOption(new Option("--proc-root <dir>", "where /proc is").env("BMAAS_AGENT_PROC_ROOT").default("/proc"))
      .addOption(new Option("--sys-root <dir>", "where /sys is").env("BMAAS_AGENT_SYS_ROOT").default("/sys"))
      .addOption(
        new Option("--log-level <level>", "log level").env("BMAAS_AGENT_LOG_LEVEL").choices(["trace", "debug", "info", "warn", "error", "silent"]).default("info"),
      );
  },

  /** Checks the combination of flags; throws a one-line reason. */
  check(flags: AgentRunFlags): Required<Pick<AgentRunFlags, "server" | "machineId" | "key">> {
    const missing = (["server", "machineId", "key"] as const).filter((k) => !flags[k]);
    if (missing.length) throw new Error(`missing ${missing.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(", ")}`);
    if (!flags.ca && !flags.insecure) throw new Error("give --ca FILE to verify the server, or --insecure (labs only)");
    if (flags.ca && flags.insecure) throw new Error("--ca and --insecure exclude each other");
    if (!isUuid(flags.machineId!)) throw new Error(`--machine-id "${flags.machineId}" is not a UUID`);
    return { server: flags.server!, machineId: flags.machineId!, key: flags.key! };
  },
};
