/**
 * STS issue through the HTTP API (assumed_role: JWT-SVID auth, policy, lease + audit, expiry job,
 * AssumeRole) beside a raw AssumeRole loop with the same parameters against the same IAM test server,
 * in the same run. The test server answers in well under a millisecond, so the ratio shows the
 * broker's own cost per lease; against AWS, STS's latency dominates both.
 */
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { IamTestServer } from '../test/support/iam-server';
import { BENCH_DB, Identity, Stats, benchConfig, flushQueue, load, post, recreateDatabase, startBroker } from './lib';

export interface StsRow {
  concurrency: number;
  tessera: Stats;
  /** The raw operation Tessera is compared to. */
  baseline: string;
  raw: Stats;
  ratio: number;
}

export async function benchSts(id: Identity, opts: { quick: boolean }): Promise<StsRow[]> {
  const plan = opts.quick ? [[1, 40], [16, 300]] : [[1, 200], [16, 2000], [64, 2000]];
  const iam = new IamTestServer();
  const endpoint = await iam.start();
  const roleArn = iam.createRole('bench-deploy');
  const token = await id.token('spiffe://bench.example/load/issuer');
  const rows: StsRow[] = [];
  await recreateDatabase(BENCH_DB);
  await flushQueue();
  const config = benchConfig(id, (doc) => {
    doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', max_attempts: 1 };
    doc.roles['bench-sts'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: [roleArn], default_ttl: '15m', max_ttl: '1h' };
    doc.policies[0].allow[0].creds.push('bench-sts');
  });
  const broker = await startBroker(config);
  const sts = new STSClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' }, maxAttempts: 1 });
  try {
    for (const [concurrency, n] of plan) {
      const tessera = await load(n, concurrency, async () => {
        const res = await post(`${broker.url}/v1/creds/bench-sts`, token, { ttl: '15m' });
        if (res.status !== 201) throw new Error(`sts issue failed: ${res.status} ${JSON.stringify(res.body)}`);
      });
      const raw = await load(n, concurrency, async (i) => {
        await sts.send(
          new AssumeRoleCommand({
            RoleArn: roleArn,
            RoleSessionName: `tessera-tsl_bench_raw_${concurrency}_${i}`,
            DurationSeconds: 900,
            SourceIdentity: 'spiffe___bench.example_load_issuer',
            Tags: [{ Key: 'tessera-subject', Value: 'spiffe://bench.example/load/issuer' }, { Key: 'tessera-lease', Value: `tsl_bench_raw_${i}` }],
          }),
        );
      });
      rows.push({ concurrency, tessera, baseline: 'AssumeRole (SourceIdentity, 2 tags)', raw, ratio: tessera.rate / raw.rate });
    }
  } finally {
    sts.destroy();
    await broker.stop();
    await iam.stop();
    await recreateDatabase(BENCH_DB);
    await flushQueue();
  }
  return rows;
}
