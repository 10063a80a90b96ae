import { create } from "@bufbuild/protobuf";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { validate as isUuid } from "uuid";
import { DatabaseUnavailableError, MachineNotFoundError, type Bmdb, type HistoryPage, type MachineView } from "../../bmdb/index.js";
import { MachineSchema } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { machineLines } from "../../lib/display.js";
import { machineMessage } from "../operator-messages.js";
import { AGENTS_PAGE_SIZE, cursorText, parseAgentsQuery } from "./agents-query.js";
import type { HeartbeatTraffic } from "./heartbeat-traffic.js";
import { BadRequest, parseListQuery } from "./list-query.js";
import type { LiveEvents } from "./live-events.js";
import { loadOverview, type OverviewSnapshot } from "./overview-data.js";
import { AgentsPage } from "./pages/agents-page.js";
import { renderPage, type LayoutProps } from "./pages/layout.js";
import { MachinePage } from "./pages/machine-page.js";
import { MachinesPage } from "./pages/machines-page.js";
import { OverviewPage } from "./pages/overview-page.js";
import { setSecurityHeaders } from "./security-headers.js";
import { loadAssets } from "./static-assets.js";

// Routes of the web view. Read-only: GET and HEAD only, and every page reads
// through the same bmdb operations as the operator API.

export interface WebAppDeps {
  bmdb: Bmdb;
  /** The shared fleet figures of the overview (primed and invalidated by the web view). */
  snapshot: OverviewSnapshot;
  traffic: HeartbeatTraffic;
  live: LiveEvents;
  logger: Logger;
}

const HISTORY_PAGE = 50;

class NotFound extends Error {}

/** The history cursor in the address bar: "<ISO time>_<event ID>". */
function parseBefore(text: string | null): { occurredAt: Date; eventId: string } | undefined {
  if (!text) return undefined;
  const [t, e] = text.split("_");
  const at = new Date(t ?? "");
  const year = at.getUTCFullYear();
  if (Number.isNaN(year) || year < 1970 || year > 9999 || !e || !isUuid(e)) throw new BadRequest("before must be the cursor of an older history page");
  return { occurredAt: at, eventId: e };
}

export function webApp(deps: WebAppDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { bmdb } = deps;
  const assets = loadAssets();
  const { snapshot } = deps;

  const html = (res: ServerResponse, status: number, props: Omit<LayoutProps, "now">, started: number) => {
    const body = renderPage({ ...props, now: bmdb.now() });
    // Server time of the whole page (database reads + rendering), for the benchmark and for curious operators.
    res.writeHead(status, { "content-type": "text/html; charset=utf-8", "server-timing": `render;dur=${(performance.now() - started).toFixed(1)}` });
    res.end(body);
  };

  async function overview(res: ServerResponse, started: number) {
    const m = await loadOverview(bmdb, snapshot, deps.traffic);
    html(res, 200, { title: "Overview", page: "overview", children: OverviewPage({ m }) }, started);
  }

  async function machines(url: URL, res: ServerResponse, started: number) {
    const query = parseListQuery(url.searchParams);
    const page = await bmdb.listMachines(query.filter, query.pageSize, query.after);
    const m = { now: bmdb.now(), query, params: url.searchParams, machines: page.machines, nextAfter: page.nextAfter };
    html(res, 200, { title: "Machines", page: "machines", search: query.filter.search ?? "", children: MachinesPage({ m }) }, started);
  }

  async function agents(url: URL, res: ServerResponse, started: number) {
    const query = parseAgentsQuery(url.searchParams);
    const page = await bmdb.listAgentRequests(query.filter, AGENTS_PAGE_SIZE, query.after);
    const m = {
      now: bmdb.now(),
      params: url.searchParams,
      state: query.filter.state,
      requests: page.requests,
      next: page.next && cursorText(page.next),
      after: query.after && cursorText(query.after),
    };
    html(res, 200, { title: "Agents", page: "agents", children: AgentsPage({ m }) }, started);
  }

  async function machine(id: string, url: URL, res: ServerResponse, started: number) {
    if (!isUuid(id)) throw new BadRequest(`"${id}" is not a machine ID (a UUID)`);
    const machineId = id.toLowerCase();
    const before = parseBefore(url.searchParams.get("before"));
    let view: MachineView | null;
    try {
      view = await bmdb.getMachine(machineId);
    } catch (e) {
      // History outlives the machine: a deleted machine still has a page.
      if (!(e instanceof MachineNotFoundError)) throw e;
      view = null;
    }
    let history: HistoryPage;
    try {
      history = await bmdb.getHistory(machineId, HISTORY_PAGE, before);
    } catch (e) {
      if (e instanceof MachineNotFoundError) throw new NotFound(`no machine ${machineId}`);
      throw e;
    }
    if (!view && history.events.length === 0 && !before) throw new NotFound(`no machine ${machineId}`);
    const lines = view ? machineLines(create(MachineSchema, machineMessage(view, bmdb.now()))) : null;
    const next = history.next;
    const m = {
      now: bmdb.now(),
      machineId,
      lines,
      history,
      olderThan: !!before,
      nextHistoryHref: next ? `/machines/${machineId}?before=${encodeURIComponent(`${next.occurredAt.toISOString()}_${next.eventId}`)}` : undefined,
    };
    html(res, 200, { title: `Machine ${machineId.slice(0, 8)}`, page: "machine", liveMachine: machineId, children: MachinePage({ m }) }, started);
  }

  async function route(req: IncomingMessage, res: ServerResponse, started: number) {
    const url = new URL(req.url ?? "/", "http://web.invalid");
    const path = url.pathname;
    const asset = assets.get(path);
    if (asset) {
      if (req.headers["if-none-match"] === asset.etag) return void res.writeHead(304, { etag: asset.etag }).end();
      return void res.writeHead(200, { "content-type": asset.type, etag: asset.etag, "cache-control": "no-cache" }).end(asset.body);
    }
    if (path === "/") return overview(res, started);
    if (path === "/machines") return machines(url, res, started);
    if (path === "/agents") return agents(url, res, started);
    const one = /^\/machines\/([^/]+)$/.exec(path);
    if (one) {
      let id: string;
      try {
        id = decodeURIComponent(one[1]!);
      } catch {
        throw new BadRequest("the machine ID in the address is malformed");
      }
      return machine(id, url, res, started);
    }
    if (path === "/events") {
      const id = url.searchParams.get("machine") || undefined;
      if (id !== undefined && !isUuid(id)) throw new BadRequest("machine must be a machine ID");
      return deps.live.serve(res, id?.toLowerCase());
    }
    if (path === "/favicon.ico") return void res.writeHead(204).end();
    throw new NotFound(`no page ${path}`);
  }

  const errorPage = (res: ServerResponse, status: number, message: string, started: number) => {
    if (res.headersSent) return void res.end();
    html(res, status, { title: String(status), page: "error", children: [<h1>{status === 404 ? "Not found" : status === 400 ? "Bad request" : status === 503 ? "Database unavailable" : "Error"}</h1>, <p>{message}</p>] }, started);
  };

  return (req, res) => {
    const started = performance.now();
    setSecurityHeaders(res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("the web view is read-only\n");
      return;
    }
    route(req, res, started).catch((e: unknown) => {
      if (e instanceof BadRequest) return errorPage(res, 400, e.message, started);
      if (e instanceof NotFound) return errorPage(res, 404, e.message, started);
      if (e instanceof DatabaseUnavailableError) return errorPage(res, 503, "The machine database is unreachable; try again shortly.", started);
      deps.logger.error({ err: e, url: req.url }, "bug: web view page failed");
      errorPage(res, 500, "The page failed; the server log says why.", started);
    });
  };
}
