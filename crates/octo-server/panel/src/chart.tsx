// A time-series line chart drawn in SVG: one line per series, a shared time axis, four grid lines,
// and a cursor (mouse or arrow keys when focused) showing every series' value at that time.
import { useState } from "preact/hooks";
import { shortTime } from "./format";

export interface Series {
  name: string;
  points: Map<number, number>; // bucket start (ms) → value
}

const PALETTE = ["#6d8cff", "#2ec4a6", "#f2a541", "#e5566b", "#a77bf3", "#4cc3f0", "#9ccc65", "#ff8a65"];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function LineChart(props: {
  title: string;
  series: Series[];
  times: number[]; // every bucket start in the range, ascending
  format: (v: number) => string;
  height?: number;
  /** Averages: a bucket without requests is a gap, not a zero. */
  gaps?: boolean;
}) {
  const { series, times, format } = props;
  const W = 640;
  const H = props.height ?? 180;
  const L = 62;
  const R = 8;
  const T = 8;
  const B = 22;
  const [cursor, setCursor] = useState<number | null>(null);
  const max = niceMax(Math.max(0, ...series.flatMap((s) => [...s.points.values()])));
  const t0 = times[0] ?? 0;
  const t1 = times[times.length - 1] ?? 1;
  const span = Math.max(1, t1 - t0);
  const x = (t: number) => L + ((t - t0) / span) * (W - L - R);
  const y = (v: number) => T + (1 - v / max) * (H - T - B);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * max);
  const xticks = times.length ? [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * span) : [];
  const empty = series.every((s) => s.points.size === 0);
  const cursorT = cursor === null ? null : times[cursor];
  const move = (e: MouseEvent) => {
    const svg = e.currentTarget as SVGSVGElement;
    const r = svg.getBoundingClientRect();
    const px = ((e.clientX - r.left) / r.width) * W;
    const t = t0 + ((px - L) / (W - L - R)) * span;
    let best = 0;
    for (let i = 0; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
    setCursor(times.length ? best : null);
  };
  const key = (e: KeyboardEvent) => {
    if (!times.length) return;
    if (e.key === "ArrowLeft") setCursor((c) => Math.max(0, (c ?? times.length) - 1));
    else if (e.key === "ArrowRight") setCursor((c) => Math.min(times.length - 1, (c ?? -1) + 1));
    else if (e.key === "Escape") setCursor(null);
    else return;
    e.preventDefault();
  };
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`${props.title} over time`}
        tabIndex={0}
        onMouseMove={move}
        onMouseLeave={() => setCursor(null)}
        onKeyDown={key}
        onBlur={() => setCursor(null)}
      >
        {ticks.map((v) => (
          <g key={v}>
            <line class="grid" x1={L} x2={W - R} y1={y(v)} y2={y(v)} />
            <text class="axis" x={L - 6} y={y(v) + 4} text-anchor="end">
              {format(v)}
            </text>
          </g>
        ))}
        {xticks.map((t) => (
          <text key={t} class="axis" x={x(t)} y={H - 6} text-anchor="middle">
            {shortTime(t, span)}
          </text>
        ))}
        {series.map((s, i) => {
          if (!props.gaps) {
            const pts = times.map((t) => `${x(t).toFixed(1)},${y(s.points.get(t) ?? 0).toFixed(1)}`);
            return <polyline key={s.name} class="line" points={pts.join(" ")} stroke={color(i)} />;
          }
          // Runs of consecutive buckets with a value; a lone bucket is a dot.
          const runs: number[][] = [];
          let run: number[] = [];
          for (const t of times) {
            if (s.points.has(t)) run.push(t);
            else if (run.length) {
              runs.push(run);
              run = [];
            }
          }
          if (run.length) runs.push(run);
          return (
            <g key={s.name}>
              {runs.map((r) =>
                r.length === 1 ? (
                  <circle key={r[0]} cx={x(r[0])} cy={y(s.points.get(r[0])!)} r={2.5} fill={color(i)} />
                ) : (
                  <polyline key={r[0]} class="line" points={r.map((t) => `${x(t).toFixed(1)},${y(s.points.get(t)!).toFixed(1)}`).join(" ")} stroke={color(i)} />
                ),
              )}
            </g>
          );
        })}
        {empty && (
          <text class="axis" x={(L + W) / 2} y={H / 2} text-anchor="middle">
            no requests in this range
          </text>
        )}
        {cursorT !== null && cursorT !== undefined && (
          <line class="cursor" x1={x(cursorT)} x2={x(cursorT)} y1={T} y2={H - B} />
        )}
      </svg>
      <div class="legend" aria-live="polite">
        {cursorT !== null && cursorT !== undefined && <span class="muted">{new Date(cursorT).toLocaleString()}</span>}
        {series.map((s, i) => (
          <span key={s.name}>
            <i style={{ background: color(i) }} />
            {s.name}
            {cursorT !== null && cursorT !== undefined && (
              <b> {s.points.has(cursorT) || !props.gaps ? format(s.points.get(cursorT) ?? 0) : "–"}</b>
            )}
          </span>
        ))}
      </div>
    </figure>
  );
}
