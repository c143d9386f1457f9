/**
 * A server's own account of its pauses, read from its /metrics (the
 * OpenTelemetry Node runtime instrumentation): the longest event-loop delay
 * since the previous scrape, and its garbage collections so far. Scraped at
 * a window's start and end, they say whether a window's tail was a pause in
 * that process.
 */

/**
 * One scrape of a process, or (from runtimeWindow) what happened between two:
 * the longest event-loop delay since the previous scrape, in ms, and the
 * scavenges (minor GCs) — how many, how many took over 10 ms, their total ms.
 */
export interface RuntimeSample {
  readonly loopDelayMaxMs: number;
  readonly scavenges: number;
  readonly scavengesOver10Ms: number;
  readonly scavengeMs: number;
}

/** One series' value in Prometheus text, matched by name and the labels given; 0 when absent. */
function seriesValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) return value;
  }
  return 0;
}

/** Scrapes one process; undefined when it does not answer (the report shows "–"). */
export async function sampleRuntime(metricsUrl: string | undefined): Promise<RuntimeSample | undefined> {
  if (metricsUrl === undefined) return undefined;
  let text: string;
  try {
    const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(5_000) });
    text = await response.text();
  } catch {
    return undefined;
  }
  const minor = { v8js_gc_type: "minor" };
  const scavenges = seriesValue(text, "v8js_gc_duration_count", minor);
  return {
    loopDelayMaxMs: 1000 * seriesValue(text, "nodejs_eventloop_delay_max"),
    scavenges,
    scavengesOver10Ms: scavenges - seriesValue(text, "v8js_gc_duration_bucket", { ...minor, le: "0.01" }),
    scavengeMs: 1000 * seriesValue(text, "v8js_gc_duration_sum", minor),
  };
}

/** The window between two samples of one process (the second's delay covers it: the first scrape restarted it). */
export function runtimeWindow(from: RuntimeSample | undefined, to: RuntimeSample | undefined): RuntimeSample | undefined {
  if (from === undefined || to === undefined) return undefined;
  return {
    loopDelayMaxMs: to.loopDelayMaxMs,
    scavenges: to.scavenges - from.scavenges,
    scavengesOver10Ms: to.scavengesOver10Ms - from.scavengesOver10Ms,
    scavengeMs: to.scavengeMs - from.scavengeMs,
  };
}
