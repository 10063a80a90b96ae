// Periodic background work (fleet gauges, the stale sweep) whose cost grows
// with the fleet. On a fleet of a million machines one fleet-stats query takes
// seconds of database CPU; run every 30 s it would take a visible share of a
// 2-core machine and show up in heartbeat latency. So the pause after each run
// is at least `share` times its duration: the job never takes more than
// ~1/share of the time, whatever the interval asked for.

export interface BackgroundJob {
  stop(): void;
}

/** Runs job now and then again after max(intervalMs, runtime × share), until stopped. */
export function startBackgroundJob(intervalMs: number, job: () => Promise<void>, share = 20): BackgroundJob {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = async () => {
    const started = Date.now();
    await job();
    if (stopped) return;
    timer = setTimeout(() => void run(), Math.max(intervalMs, (Date.now() - started) * share));
    timer.unref();
  };
  void run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
