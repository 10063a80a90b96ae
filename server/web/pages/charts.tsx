// Pictures drawn on the server as SVG: no chart library to ship, nothing to
// run in the browser, and colours come from the stylesheet's classes (the
// CSP allows no inline style).

export interface Segment {
  value: number;
  /** CSS class: fresh, stale, never, … */
  cls: string;
  name: string;
}

export interface BarRow {
  label: string;
  href?: string;
  segments: Segment[];
}

const LABEL_W = 170;
const BAR_W = 420;
const ROW_H = 24;

/** One 100% bar per row, split into its segments, with the counts beside it. */
export function StackedBars(props: { rows: BarRow[]; title: string }) {
  const height = props.rows.length * ROW_H + 4;
  return (
    <svg class="chart" role="img" aria-label={props.title} viewBox={`0 0 ${LABEL_W + BAR_W + 220} ${height}`} width={LABEL_W + BAR_W + 220} height={height}>
      {props.rows.map((row, i) => {
        const total = row.segments.reduce((a, s) => a + s.value, 0);
        const y = i * ROW_H + 2;
        let x = LABEL_W;
        const label = (
          <text x={LABEL_W - 8} y={y + 15} class="label" text-anchor="end">
            {row.label}
          </text>
        );
        return (
          <g key={row.label}>
            {row.href ? <a href={row.href}>{label}</a> : label}
            {row.segments.map((s) => {
              const w = total === 0 ? 0 : (s.value / total) * BAR_W;
              const rect = (
                <rect class={`seg ${s.cls}`} x={x.toFixed(1)} y={y} width={w.toFixed(1)} height={ROW_H - 6}>
                  <title>{`${row.label}: ${s.value} ${s.name}`}</title>
                </rect>
              );
              x += w;
              return rect;
            })}
            <text x={LABEL_W + BAR_W + 8} y={y + 15} class="counts">
              {row.segments.map((s) => `${s.value} ${s.name}`).join(" · ")}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** Columns of values, with a caption under the first and the last. */
export function Columns(props: { values: { value: number; label: string; cls?: string }[]; title: string; firstCaption: string; lastCaption: string; unit: string }) {
  const H = 110;
  const W = 640;
  const n = Math.max(1, props.values.length);
  const step = W / n;
  const max = Math.max(1, ...props.values.map((v) => v.value));
  return (
    <svg class="chart" role="img" aria-label={props.title} viewBox={`0 0 ${W + 100} ${H + 24}`} width={W + 100} height={H + 24}>
      <text x={W + 6} y={12} class="axis">{props.unit === "/s" ? `${formatNumber(max)} /s` : formatNumber(max)}</text>
      <line x1={0} x2={W} y1={H} y2={H} class="baseline" />
      {props.values.map((v, i) => {
        const h = (v.value / max) * (H - 4);
        return (
          <rect class={`col ${v.cls ?? ""}`} x={(i * step + 1).toFixed(1)} y={(H - h).toFixed(1)} width={Math.max(1, step - 2).toFixed(1)} height={h.toFixed(1)}>
            <title>{`${v.label}: ${formatNumber(v.value)} ${props.unit}`}</title>
          </rect>
        );
      })}
      <text x={0} y={H + 18} class="axis">{props.firstCaption}</text>
      <text x={W} y={H + 18} class="axis" text-anchor="end">{props.lastCaption}</text>
    </svg>
  );
}

export function formatNumber(n: number): string {
  return n >= 100 || Number.isInteger(n) ? Math.round(n).toLocaleString("en-US") : n.toFixed(1);
}
