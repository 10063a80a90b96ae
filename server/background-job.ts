// Periodic background work (fleet gauges, the stale sweep) whose cost grows
// with the fleet. On a fleet of a million machines one fleet-stats query takes
// most of a second of database CPU (0.8 s of one core; 1.3 s before the
// heartbeat moved into the agent's row), the stale sweep's scan ~0.1 s. Run
// every 30 s, the count took a visible share of a 2-core machine and showed up
// in heartbeat latency: the seconds around each count had a p99 2-3× the
// others'. So the pause after each run is at least `share` times its
// duration: the job never takes more than ~1/share of the time (1% by
// default), whatever the interval asked for. With 1,000,000 machines the
// fleet gauges refresh about every 80 s (bmaas_fleet_stats_age_seconds says
// how old they are); up to ~300,000 machines the interval asked for holds.

export interface BackgroundJob {
  stop(): void;
}

export interface BackgroundJobOptions {
  /** The pause after a run is at least this many times the run's duration [100]. */
  share?: number;
  /** The first run waits this long [0: it runs at once]. */
  firstDelayMs?: number;
}

/** Runs job (after firstDelayMs) and then again after max(intervalMs, runtime × share), until stopped. */
export function startBackgroundJob(intervalMs: number, job: () => Promise<void>, options: BackgroundJobOptions = {}): BackgroundJob {
  const { share = 100, firstDelayMs = 0 } = options;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const runAfter = (ms: number) => {
    timer = setTimeout(() => void run(), ms);
    timer.unref();
  };
  const run = async () => {
    const started = Date.now();
    await job();
    if (!stopped) runAfter(Math.max(intervalMs, (Date.now() - started) * share));
  };
  if (firstDelayMs > 0) runAfter(firstDelayMs);
  else void run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
