/** Writes events onto a locked shard head: the keyed link and new seal, after evidence of a broken head when there is one. */
import { Logger } from '@nestjs/common';
import type { Metrics } from '../metrics/metrics';
import { Queryable } from '../storage/database';
import { HeadProblem, hasSeal, nextLink, sealProblem, unsealedHeadProblem } from './audit-chain';
import { StoredEvent, storedEvent } from './audit-event';
import { AuditKeys } from './audit-keys';
import { AuditRepository, ShardHead } from './audit.repository';

/**
 * The MAC is computed here, between locking the head and writing the event, so the key never reaches
 * PostgreSQL. Nothing is ever sealed silently: a head whose seal does not verify gets an
 * `audit.head_broken` event first, so a head moved back, or unsealed, by someone without the key cannot
 * be re-sealed by the next event.
 */
export class AuditWriter {
  constructor(
    private readonly keys: AuditKeys,
    private readonly repo: AuditRepository,
    private readonly log: Logger,
    private readonly metrics?: Pick<Metrics, 'auditEvents' | 'auditChainBroken'>,
  ) {}

  /**
   * Writes one event onto `head`, which the caller has locked (see AuditRepository), in its shard.
   * `genesis` allows the initial head, for the event that keys an empty shard. Returns the event and
   * the head as it now is (still locked), for a caller that writes more events in the transaction.
   */
  async link(q: Queryable, head: ShardHead, event: StoredEvent, opts: { genesis?: boolean } = {}): Promise<{ id: string; hash: Buffer; head: ShardHead }> {
    let prev = head.hash;
    const problem = await this.headProblem(q, head, opts.genesis === true);
    if (problem) {
      this.metrics?.auditChainBroken('head_seal');
      this.log.error(
        `the audit head of shard ${head.shard} has a seal that does not verify (${problem}): events were cut off the end or the head was replaced; recorded in the trail`,
      );
      const evidence = storedEvent({
        type: 'audit.head_broken',
        actor: null,
        detail: { problem, head_hash: head.hash.toString('hex'), head_key_id: head.key_id },
      });
      prev = (await this.insert(q, head.shard, prev, evidence)).hash;
    }
    const written = await this.insert(q, head.shard, prev, event);
    return { ...written, head: { shard: head.shard, hash: written.hash, key_id: this.keys.currentId, seal: this.keys.seal(written.hash)! } };
  }

  /**
   * Writes several events onto `head` in one statement, in order, as `link` would one after another.
   * Returns the head as it now is (still locked).
   */
  async linkMany(q: Queryable, head: ShardHead, events: StoredEvent[]): Promise<{ ids: string[]; head: ShardHead }> {
    if (events.length === 0) return { ids: [], head };
    if (events.length === 1 || (await this.headProblem(q, head, false))) {
      // One event, or a head to report first: the one-by-one path writes the evidence.
      const ids: string[] = [];
      for (const event of events) {
        const written = await this.link(q, head, event);
        ids.push(written.id);
        head = written.head;
      }
      return { ids, head };
    }
    const links: ReturnType<typeof nextLink>[] = [];
    let prev = head.hash;
    for (const event of events) {
      const link = nextLink(this.keys, prev, event.body);
      links.push(link);
      prev = link.hash;
    }
    const ids = await this.repo.insertMany(q, head.shard, events, links);
    for (const event of events) this.metrics?.auditEvents.inc({ type: event.type });
    const last = links[links.length - 1];
    return { ids, head: { shard: head.shard, hash: last.hash, key_id: last.keyId, seal: last.seal } };
  }

  private async insert(q: Queryable, shard: number, prev: Buffer, event: StoredEvent): Promise<{ id: string; hash: Buffer }> {
    const link = nextLink(this.keys, prev, event.body);
    const id = await this.repo.insert(q, shard, event, link);
    // Every event of the trail is written here or in linkMany: the two places they are counted.
    this.metrics?.auditEvents.inc({ type: event.type });
    return { id, hash: link.hash };
  }

  /** Undefined when the head may be extended; the shard's newest event is read only for a head with no seal. */
  private async headProblem(q: Queryable, head: ShardHead, genesis: boolean): Promise<HeadProblem | undefined> {
    if (hasSeal(head)) return sealProblem(this.keys, head);
    return unsealedHeadProblem(head, await this.repo.newestEvent(q, head.shard), genesis);
  }
}
