import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Exposition, Sample, familyOf, parseExposition, promqlMetricNames } from '../../src/metrics/metric-names';
import { TestBroker, eventually, startBroker } from '../support/broker';
import { createPgAccount, owned, settled } from '../support/statics';

const DEPLOY = join(__dirname, '..', '..', 'deploy');

/** DESIGN §13: each contract metric, its type and exactly its label names. */
const CONTRACT: Record<string, { type: string; labels: string[] }> = {
  tessera_leases: { type: 'gauge', labels: ['plugin', 'role', 'state'] },
  tessera_lease_issue_seconds: { type: 'histogram', labels: ['plugin'] },
  tessera_lease_revocations_total: { type: 'counter', labels: ['plugin', 'result'] },
  tessera_lease_expiry_lateness_seconds: { type: 'histogram', labels: [] },
  tessera_static_rotations_total: { type: 'counter', labels: ['result', 'trigger'] },
  tessera_static_secrets: { type: 'gauge', labels: ['state'] },
  tessera_static_last_rotation_timestamp_seconds: { type: 'gauge', labels: ['name'] },
  tessera_queue_jobs: { type: 'gauge', labels: ['queue', 'state'] },
  tessera_target_up: { type: 'gauge', labels: ['connection'] },
  tessera_audit_events_total: { type: 'counter', labels: ['type'] },
  tessera_http_requests_total: { type: 'counter', labels: ['route', 'status'] },
};

/** Every PromQL expression of the shipped alert rules and of every dashboard panel (rows' nested panels included). */
function shippedExpressions(): { where: string; expr: string }[] {
  const rules = parse(readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8'));
  const out: { where: string; expr: string }[] = [];
  for (const group of rules.groups) for (const rule of group.rules) out.push({ where: `alert ${rule.alert}`, expr: String(rule.expr) });
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'tessera.json'), 'utf8'));
  const panels = (list: any[]): any[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  for (const p of panels(dashboard.panels)) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: String(t.expr) });
  return out;
}

describe('metrics contract (DESIGN §13) on a running broker', () => {
  let broker: TestBroker;
  let scrape: Exposition;
  let workload: string;
  let operator: string;
  const secrets: string[] = [];
  const leaseIds: string[] = [];
  const accounts: string[] = [];

  beforeAll(async () => {
    await createPgAccount('tess_metrics_static', 'legacy-metrics-pw-1');
    secrets.push('legacy-metrics-pw-1');
    broker = await startBroker('metrics', (doc) => {
      doc.static_secrets = { 'metrics-static': { connection: 'target', username: 'tess_metrics_static', strategy: 'single' } };
      doc.policies.push({ name: 'legacy', subjects: ['spiffe://test.example/ns/legacy/*'], allow: [{ static: ['metrics-static'] }] });
    });
    workload = await broker.token('ns/app/metrics-client');
    operator = await broker.token('ops/olga');
    const reader = await broker.token('ns/legacy/app');
    const issue = async (ttl: string) => {
      const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl } });
      expect(res.status).toBe(201);
      secrets.push(res.body.credentials.password);
      leaseIds.push(res.body.lease_id);
      accounts.push(res.body.credentials.username);
      return res.body.lease_id as string;
    };

    // Issue and revoke one lease; let another expire (the lateness histogram).
    const revoked = await issue('10m');
    const expiring = await issue('1s');
    expect((await broker.api('GET', `/v1/leases/${revoked}`, { token: workload })).status).toBe(200);
    expect((await broker.api('POST', `/v1/leases/${revoked}/revoke`, { token: workload })).body.state).toBe('revoked');
    const expired = await eventually(async () => (await broker.api('GET', `/v1/leases/${expiring}`, { token: workload })).body.state === 'revoked');
    expect(expired).toBe(true);
    await issue('10m'); // stays active

    // A static secret: taken over at registration, then rotated by an operator.
    secrets.push((await owned(broker, reader, 'metrics-static')).password);
    const rotation = await broker.api('POST', '/v1/static/metrics-static/rotate', { token: operator, body: { reason: 'metrics test' } });
    expect(rotation.status).toBe(202);
    expect((await settled(broker, operator, rotation.body.rotation_id)).status).toBe('succeeded');
    secrets.push((await broker.api('GET', '/v1/static/metrics-static/creds', { token: reader })).body.password);

    // Unknown paths, and a known route asked about an unknown id.
    expect((await broker.api('GET', '/v1/no-such-route/tsl_abcdefghijklmnopqrstuvwx')).status).toBe(404);
    expect((await broker.api('GET', '/v1/leases/tsl_AAAAAAAAAAAAAAAAAAAAAAAA', { token: workload })).status).toBe(404);

    const res = await broker.api('GET', '/metrics');
    expect(res.status).toBe(200);
    scrape = parseExposition(res.body);
  });
  afterAll(() => broker?.close());

  const samplesOf = (family: string): Sample[] =>
    scrape.samples.filter((s) => s.name === family || (CONTRACT[family]?.type === 'histogram' && familyOf(s.name, scrape.types) === family));
  const value = (name: string, labels: Record<string, string>) =>
    scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

  it('exports every metric the alert rules and the dashboard use', () => {
    const used = shippedExpressions();
    expect(used.length).toBeGreaterThan(20);
    const missing = used.flatMap(({ where, expr }) => promqlMetricNames(expr).filter((n) => !familyOf(n, scrape.types)).map((n) => `${n} (${where})`));
    expect(missing).toEqual([]);
    // The rules and the dashboard use every contract metric between them.
    const names = new Set(used.flatMap(({ expr }) => promqlMetricNames(expr).map((n) => familyOf(n, scrape.types))));
    expect(Object.keys(CONTRACT).filter((n) => !names.has(n))).toEqual([]);
  });

  it.each(Object.entries(CONTRACT))('exports %s with exactly its contract labels', (name, { type, labels }) => {
    expect(scrape.types.get(name)).toBe(type);
    const samples = samplesOf(name);
    expect(samples.length).toBeGreaterThan(0);
    for (const s of samples) {
      const own = Object.keys(s.labels).filter((l) => !(type === 'histogram' && l === 'le'));
      expect(own.sort()).toEqual(labels);
    }
  });

  it('counted what the test did', () => {
    expect(value('tessera_lease_issue_seconds_count', { plugin: 'postgres' })).toBe(3);
    expect(value('tessera_lease_revocations_total', { plugin: 'postgres', result: 'succeeded' })).toBe(2);
    expect(value('tessera_lease_expiry_lateness_seconds_count', {})).toBe(1);
    expect(value('tessera_static_rotations_total', { result: 'succeeded', trigger: 'register' })).toBe(1);
    expect(value('tessera_static_rotations_total', { result: 'succeeded', trigger: 'manual' })).toBe(1);
    expect(value('tessera_static_secrets', { state: 'active' })).toBe(1);
    expect(value('tessera_static_last_rotation_timestamp_seconds', { name: 'metrics-static' })).toBeGreaterThan(Date.now() / 1000 - 120);
    expect(value('tessera_leases', { role: broker.role, plugin: 'postgres', state: 'active' })).toBe(1);
    expect(value('tessera_target_up', { connection: 'target' })).toBe(1);
    expect(value('tessera_audit_events_total', { type: 'lease.issued' })).toBe(3);
    expect(value('tessera_audit_events_total', { type: 'static.rotated' })).toBe(2);
    expect(value('tessera_audit_chain_ok', {})).toBe(1);
    for (const state of ['waiting', 'delayed', 'active', 'failed']) expect(samplesOf('tessera_queue_jobs').some((s) => s.labels.queue === 'leases' && s.labels.state === state)).toBe(true);
    expect(value('tessera_http_requests_total', { route: 'unmatched', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(value('tessera_http_requests_total', { route: '/v1/leases/:id', status: '404' })).toBe(1);
    expect(value('tessera_http_requests_total', { route: '/v1/leases/:id/revoke', status: '200' })).toBe(1);
  });

  it('no label value is a lease id, a uuid, a subject, an account, a secret or a raw path', () => {
    const values = scrape.samples.flatMap((s) => Object.values(s.labels));
    expect(secrets.length).toBe(6);
    for (const v of values) {
      expect(v).not.toMatch(/tsl_[A-Za-z0-9_-]{24}/);
      expect(v).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
      expect(v).not.toMatch(/spiffe:|ns\/app|ops\/olga/);
      for (const s of [...secrets, ...leaseIds, ...accounts]) expect(v).not.toContain(s);
    }
  });

  it('http route labels are route templates', () => {
    const routes = new Set(samplesOf('tessera_http_requests_total').map((s) => s.labels.route));
    expect(routes).toContain('/v1/leases/:id');
    expect(routes).toContain('/v1/static/:name/rotate');
    expect(routes).toContain('unmatched');
    for (const route of routes) {
      if (route === 'unmatched') continue;
      expect(route).toMatch(/^\/[A-Za-z0-9/_:*.{}-]*$/);
      expect(route).not.toMatch(/no-such-route|metrics-static|tsl_|rot_/);
    }
  });

  // Last: it breaks this file's audit trail on purpose.
  it('audit chain health: a head whose seal no longer verifies is found at the next append, and verify says so too', async () => {
    await broker.state(`UPDATE audit_head SET hash = decode(repeat('00', 32), 'hex')`);
    expect((await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '10m' } })).status).toBe(201);
    const verify = await broker.api('GET', '/v1/audit/verify', { token: operator });
    expect(verify.body.ok).toBe(false);
    scrape = parseExposition((await broker.api('GET', '/metrics')).body);
    expect(value('tessera_audit_chain_ok', {})).toBe(0);
    expect(value('tessera_audit_chain_problems_total', { check: 'head_seal' })).toBeGreaterThanOrEqual(1);
    expect(value('tessera_audit_chain_problems_total', { check: 'verify' })).toBe(1);
    expect(value('tessera_audit_events_total', { type: 'audit.head_broken' })).toBeGreaterThanOrEqual(1);
  });
});
