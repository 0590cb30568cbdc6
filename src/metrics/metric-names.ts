/**
 * Reading metric names out of PromQL and out of the Prometheus text format: how the contract test
 * checks that the shipped alert rules and dashboard use only metrics a running broker exports.
 */

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

/**
 * The tessera_ metric names a PromQL expression reads, each once, in order of first use. Quoted
 * strings (label values, regexes) are skipped, so a label value that happens to start with tessera_
 * is not taken for a metric.
 */
export function promqlMetricNames(expr: string): string[] {
  const code = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""').replace(/#[^\n]*/g, '');
  const names = code.match(/(?<![A-Za-z0-9_:])tessera_[A-Za-z0-9_:]*/g) ?? [];
  return [...new Set(names)];
}

/**
 * The metric family a series name belongs to, given the families' types (`# TYPE` lines): itself,
 * or for a histogram's or summary's `_bucket`, `_sum` and `_count` series, the family they belong to.
 * Undefined when no exported family has that name.
 */
export function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return undefined;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  /** Family name → type, from the `# TYPE` lines. */
  types: Map<string, string>;
  samples: Sample[];
}

/** Parses the Prometheus text exposition format (what GET /metrics answers). */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|[Ii]nf|[Nn]a[Nn]))(?:\s+-?[0-9]+)?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3].replace(/inf/i, 'Infinity')) });
  }
  return { types, samples };
}
