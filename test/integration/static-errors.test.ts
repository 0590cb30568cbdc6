import { TestBroker, eventually, startBroker } from '../support/broker';
import { spiffe } from '../support/identity';
import { withAdmin } from '../support/target';

/**
 * A target's error text can name hosts, users and internals: workloads that may read a static secret's
 * metadata see stable codes only; operators also see the text.
 */
describe('static secret errors: a code for policy readers, the text for operators', () => {
  let broker: TestBroker;
  let reader: string;
  let operator: string;

  beforeAll(async () => {
    // An account that does not exist on the target: every rotation of it fails.
    await withAdmin('postgres', (c) => c.query('DROP ROLE IF EXISTS "tess_ghost_missing"'));
    broker = await startBroker('staterr', (doc) => {
      doc.rotation_attempts = 1;
      doc.static_secrets = { ghost: { connection: 'target', username: 'tess_ghost_missing', rotate_every: '24h' } };
      doc.policies.push({ name: 'legacy', subjects: [spiffe('ns/legacy/*')], allow: [{ static: ['ghost'] }] });
    });
    reader = await broker.token('ns/legacy/app');
    operator = await broker.token('ops/olga');
  });
  afterAll(() => broker.close());

  it('GET /v1/static/{name} shows last_error and rotation errors as codes to readers, with the detail for operators', async () => {
    const asOperator = (await eventually(async () => {
      const res = await broker.api('GET', '/v1/static/ghost', { token: operator });
      return res.body.last_error_detail && res.body.rotations.some((r: any) => r.status === 'failed') ? res.body : undefined;
    }, 30_000))!;
    expect(asOperator).toBeDefined();
    expect(asOperator.last_error).toBe('rotation_failed');
    expect(asOperator.last_error_detail).toEqual(expect.any(String));
    const failed = asOperator.rotations.find((r: any) => r.status === 'failed');
    expect(failed.error).toEqual(expect.any(String));
    expect(failed.error).not.toMatch(/^(rotation|attempt)_failed$/);
    const stepErrors = failed.steps.filter((s: any) => s.error !== undefined).map((s: any) => s.error);
    expect(stepErrors.length).toBeGreaterThan(0);
    expect(stepErrors).not.toContain('attempt_failed');

    const res = await broker.api('GET', '/v1/static/ghost', { token: reader });
    expect(res.status).toBe(200);
    expect(res.body.last_error).toBe('rotation_failed');
    expect(res.body.last_error_detail).toBeNull();
    const seen = res.body.rotations.find((r: any) => r.rotation_id === failed.rotation_id);
    expect(seen.error).toBe('rotation_failed');
    for (const r of res.body.rotations) {
      expect([undefined, 'rotation_failed', 'attempt_failed']).toContain(r.error);
      for (const step of r.steps) expect([undefined, 'attempt_failed']).toContain(step.error);
    }
    const text = JSON.stringify(res.body);
    expect(text).not.toContain(asOperator.last_error_detail);
    for (const detail of new Set([failed.error, ...stepErrors])) expect(text).not.toContain(detail);

    // The operator-only rotation view keeps the text.
    const rotation = await broker.api('GET', `/v1/rotations/${failed.rotation_id}`, { token: operator });
    expect(rotation.body.error).toBe(failed.error);
  });
});
