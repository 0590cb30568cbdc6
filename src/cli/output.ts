/** Printing for the client commands: JSON for programs, aligned columns for people. */

type Cell = string | number | boolean | null | undefined;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Rows as aligned columns under upper-case headers; empty cells show as "-". */
export function printTable(rows: readonly Record<string, Cell>[], columns: readonly string[]): void {
  const cells = rows.map((row) => columns.map((c) => show(row[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (parts: string[]) => parts.map((p, i) => (i === parts.length - 1 ? p : p.padEnd(widths[i]))).join('  ');
  process.stdout.write(`${[line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n')}\n`);
}

/** One object as "key  value" lines. */
export function printRecord(record: Record<string, Cell>): void {
  const width = Math.max(...Object.keys(record).map((k) => k.length));
  process.stdout.write(`${Object.entries(record).map(([k, v]) => `${k.padEnd(width)}  ${show(v)}`).join('\n')}\n`);
}

/** `export NAME='value'` lines that any POSIX shell reads back exactly. */
export function printExports(vars: Record<string, string>): void {
  process.stdout.write(Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(''));
}

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function show(value: Cell): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}
