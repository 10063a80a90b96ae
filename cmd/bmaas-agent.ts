#!/usr/bin/env node
import { Command, Option } from "commander";
import { pino } from "pino";
import { Agent, installRequestJson } from "../agent/agent.js";
import { runCommand } from "../agent/commands.js";
import { AgentConfig, type AgentRunFlags } from "../agent/config.js";
import { collectHardwareReport } from "../agent/hwreport/index.js";
import { createKeyFile, loadCertFile, loadKeyFile, publicKeyHex } from "../agent/identity.js";
import { InstallStateFile } from "../agent/install-state.js";
import { grpcTransport } from "../agent/transport.js";
import { MAX_TIMER_MS } from "../lib/flags.js";
import { readNamedFile } from "../lib/read-file.js";
import { fail } from "./private/fail.js";

const NAME = "bmaas-agent";
process.noDeprecation = true; // see bmctl: grpc-js + IP targets

/** Resolves after ms, or at once when signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // Node fires a timer of more than 2^31-1 ms after 1 ms: never ask for one.
    const timer = setTimeout(resolve, Math.min(ms, MAX_TIMER_MS));
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

async function run(flags: AgentRunFlags): Promise<void> {
  let required: ReturnType<typeof AgentConfig.check>;
  let key: ReturnType<typeof loadKeyFile>;
  let caPem: string | undefined;
  let certPem: string | undefined;
  try {
    required = AgentConfig.check(flags);
    key = loadKeyFile(required.key);
    certPem = flags.cert ? loadCertFile(flags.cert, key) : undefined;
    caPem = flags.ca ? readNamedFile("--ca", flags.ca).toString("utf8") : undefined;
  } catch (e) {
    fail(NAME, (e as Error).message, 2);
  }
  const logger = pino({ level: flags.logLevel, base: { svc: NAME, machineId: required.machineId } }, pino.destination(2));
  if (flags.insecure) logger.warn("--insecure: the server's certificate is NOT verified; use only in a lab");

  const { transport, close } = await grpcTransport({ server: required.server, key, insecure: !!flags.insecure, ...(caPem && { caPem }), ...(certPem && { certPem }) });
  const abort = new AbortController();
  const roots = { proc: flags.procRoot, sys: flags.sysRoot };
  const installer = flags.installer;
  const reboot = flags.rebootCommand;
  const agent = new Agent({
    machineId: required.machineId.toLowerCase(),
    transport,
    collectHardwareReport: () => collectHardwareReport(roots),
    ...(installer && { install: (req) => runCommand(installer, installRequestJson(req), flags.installerTimeout * 1000) }),
    ...(reboot && { reboot: () => runCommand(reboot, "", 300_000) }),
    installState: new InstallStateFile(flags.stateDir),
    intervalMs: flags.interval * 1000,
    jitter: flags.jitter,
    sleep: (ms) => sleep(ms, abort.signal),
    logger,
  });

  if (flags.once) {
    let error: Awaited<ReturnType<typeof agent.once>>;
    try {
      error = await agent.once();
    } catch (e) {
      fail(NAME, (e as Error).message);
    }
    close();
    if (error) fail(NAME, `heartbeat failed: ${error.text}`, error.code ?? 1);
    process.exit(0);
  }
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      logger.info({ signal }, "stopping");
      abort.abort();
    });
  }
  try {
    await agent.run(abort.signal);
  } catch (e) {
    // A broken state directory, say: one line, not a stack trace.
    fail(NAME, (e as Error).message);
  }
  close();
}

const program = new Command(NAME)
  .description("Reference agent: reports this machine's hardware to bmaas-server, heartbeats, runs requested installations.")
  .configureOutput({ outputError: (str, write) => write(str.trim().split("\n")[0] + "\n") });

const keyOption = () => new Option("--key <file>", "Ed25519 private key file").env("BMAAS_AGENT_KEY").makeOptionMandatory();

program
  .command("keygen")
  .description("create an Ed25519 key (mode 0600; never overwrites) and print its public key for `bmctl agent register`")
  .addOption(keyOption())
  .addHelpText("after", "\nExample:\n  bmaas-agent keygen --key /etc/bmaas-agent/key.pem")
  .action((o: { key: string }) => {
    try {
      process.stdout.write(publicKeyHex(createKeyFile(o.key)) + "\n");
    } catch (e) {
      fail(NAME, (e as Error).message);
    }
  });

program
  .command("pubkey")
  .description("print the public key of an agent key")
  .addOption(keyOption())
  .addHelpText("after", "\nExample:\n  bmaas-agent pubkey --key /etc/bmaas-agent/key.pem")
  .action((o: { key: string }) => {
    try {
      process.stdout.write(publicKeyHex(loadKeyFile(o.key)) + "\n");
    } catch (e) {
      fail(NAME, (e as Error).message);
    }
  });

AgentConfig.registerRunFlags(
  program
    .command("run")
    .description("heartbeat to the server until stopped (or once)")
    .addHelpText(
      "after",
      "\nExample:\n  bmaas-agent run --server bmaas.example:8080 --machine-id 9b4b8487-6a66-4ca3-b732-0f789f43f1a8 \\\n    --key /etc/bmaas-agent/key.pem --ca /etc/bmaas-agent/ca.pem --installer /usr/local/bin/install-os",
    ),
).action((o: AgentRunFlags) => run(o));

await program.parseAsync();
