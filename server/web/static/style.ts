// The web view's stylesheet, served as /static/style.css (the CSP allows no
// inline style). Kept as a module so that the build carries it into dist/.
export const STYLE_CSS = `
:root { --fresh: #2e9d57; --stale: #d4a017; --never: #9aa3ad; --bad: #c0392b; --fg: #1d232a; --muted: #6b7580; --line: #dde2e7; --bg: #f6f8fa; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
header { display: flex; align-items: center; gap: 1.2rem; padding: .55rem 1.2rem; background: #1d232a; color: #fff; }
header .brand { font-weight: 600; letter-spacing: .02em; }
header nav a { color: #cfd6dd; text-decoration: none; margin-right: .9rem; }
header nav a.active, header nav a:hover { color: #fff; text-decoration: underline; }
header .search { flex: 1; }
header .search input { width: 100%; max-width: 28rem; padding: .3rem .5rem; border-radius: 4px; border: 0; }
.live { font-size: 12px; padding: .1rem .5rem; border-radius: 9px; background: #4b5563; }
.live.on { background: var(--fresh); }
.live.connecting { background: var(--stale); color: #1d232a; }
.live.off { background: var(--bad); }
.notice { margin: .6rem 1.2rem 0; padding: .5rem .8rem; border: 1px solid var(--stale); background: #fff8e1; border-radius: 4px; }
.notice-inline { padding: .5rem .8rem; background: #fff8e1; border-radius: 4px; }
main { padding: .6rem 1.2rem 2rem; }
h1 { font-size: 1.35rem; margin: .5rem 0 .8rem; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.counters { display: flex; flex-wrap: wrap; gap: .6rem; list-style: none; padding: 0; margin: 0; }
.counter { border: 1px solid var(--line); border-radius: 6px; background: var(--bg); min-width: 9.5rem; }
.counter > a, .counter > span { display: block; }
.counter a { color: inherit; text-decoration: none; display: block; padding: .5rem .8rem; }
.counter > .value, .counter > .name { padding: 0 .8rem; }
.counter > .value { padding-top: .5rem; }
.counter > .name { padding-bottom: .5rem; }
.counter .value { display: block; font-size: 1.5rem; font-weight: 600; }
.counter .name { display: block; color: var(--muted); font-size: 12.5px; }
.counter a:hover { background: #eef2f6; }
section.two { display: flex; flex-wrap: wrap; gap: 2rem; }
.chart { max-width: 100%; height: auto; }
.chart .label, .chart .counts, .chart .axis { font-size: 12px; fill: var(--fg); }
.chart .axis { fill: var(--muted); }
.chart .baseline { stroke: var(--line); }
.chart .seg.fresh, .chart .col.fresh { fill: var(--fresh); }
.chart .seg.stale, .chart .col.stale { fill: var(--stale); }
.chart .seg.never, .chart .col.never { fill: var(--never); }
.chart .col { fill: var(--accent); }
.asof { color: var(--muted); font-size: 12.5px; margin: -.4rem 0 .8rem; }
.legend { color: var(--muted); font-size: 12.5px; margin: .2rem 0; }
table.data { border-collapse: collapse; width: 100%; }
table.data th, table.data td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
table.data th { background: var(--bg); font-weight: 600; font-size: 12.5px; }
table.data th button { all: unset; cursor: pointer; }
table.data th[aria-sort=ascending] button::after { content: " ▲"; }
table.data th[aria-sort=descending] button::after { content: " ▼"; }
table.data .num { text-align: right; }
table.data tbody tr:hover { background: #f9fbfc; }
table.history td { white-space: normal; }
table.history .details { word-break: break-all; }
table.tags th { text-align: left; padding: .25rem 1rem .25rem 0; color: var(--muted); font-weight: 500; vertical-align: top; white-space: nowrap; }
table.tags tr.sub th { padding-left: 1.2rem; }
table.tags td { padding: .25rem 0; }
table.tags tr[data-tag=warning] td { color: var(--bad); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 9px; font-size: 12px; background: #e5e9ee; }
.badge.fresh { background: #d5f0df; color: #17663a; }
.badge.stale { background: #fbefc5; color: #7a5b00; }
.badge.never { background: #e5e9ee; color: #4b5563; }
.badge.on { background: #dbe7fd; color: #1e40af; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; padding: .6rem .8rem; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; }
form.filters label { font-size: 12.5px; color: var(--muted); }
.summary { color: var(--muted); }
.pager { display: flex; gap: 1.5rem; margin-top: .8rem; }
`;
