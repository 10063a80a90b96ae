import { buildIfChanged } from "../scripts/build-if-changed.mjs";

// The command tests run the built commands (dist/cmd/*.js, as operators do)
// instead of tsx per process, which cost seconds a spawn. So the suite builds
// first — once per run, in vitest's main process before any worker starts,
// and only when a source changed since the last build (a clean clone builds).
export default function setup(): void {
  buildIfChanged();
}
