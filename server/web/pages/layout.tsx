import type { ComponentChildren } from "preact";
import { renderToString } from "preact-render-to-string";

// The frame of every page: one stylesheet and one script, both served by the
// server itself (no inline code: the CSP forbids it). The body's data
// attributes tell the script what to keep live.

export type PageName = "overview" | "machines" | "machine" | "agents" | "error";

export interface LayoutProps {
  title: string;
  page: PageName;
  /** The server's clock at render time, so ages tick from the server's "now". */
  now: Date;
  /** Only this machine's events (machine page); else every event. */
  liveMachine?: string;
  /** Search text to show in the header's box. */
  search?: string;
  children: ComponentChildren;
}

function NavLink(props: { href: string; active: boolean; children: ComponentChildren }) {
  return (
    <a href={props.href} class={props.active ? "active" : undefined} aria-current={props.active ? "page" : undefined}>
      {props.children}
    </a>
  );
}

export function Layout(props: LayoutProps) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} — bmaas`}</title>
        <link rel="stylesheet" href="/static/style.css" />
        <script type="module" src="/static/app.js"></script>
      </head>
      <body data-page={props.page} data-now={props.now.toISOString()} data-live-machine={props.liveMachine}>
        <header>
          <span class="brand">bmaas fleet</span>
          <nav>
            <NavLink href="/" active={props.page === "overview"}>Overview</NavLink>
            <NavLink href="/machines" active={props.page === "machines"}>Machines</NavLink>
            <NavLink href="/agents" active={props.page === "agents"}>Agents</NavLink>
          </nav>
          <form class="search" method="get" action="/machines" role="search">
            <input type="search" name="q" value={props.search ?? ""} placeholder="machine ID, provider ID or key fingerprint prefix" aria-label="search" />
          </form>
          <span id="live" class="live" title="live updates from the machine event feed">static</span>
        </header>
        <div id="notice" class="notice" role="status" hidden></div>
        <main id="content">{props.children}</main>
      </body>
    </html>
  );
}

/** A whole HTML document. */
export function renderPage(props: LayoutProps): string {
  return "<!doctype html>" + renderToString(<Layout {...props} />);
}
