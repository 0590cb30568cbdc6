/** Writes events onto a locked audit head: the keyed link and new seal, after evidence of a broken head when there is one. */
import { Logger } from '@nestjs/common';
import { Queryable } from '../storage/database';
import { AuditHead, HeadProblem, hasSeal, nextLink, sealProblem, unsealedHeadProblem } from './audit-chain';
import { StoredEvent, storedEvent } from './audit-event';
import { AuditKeys } from './audit-keys';
import { AuditRepository } from './audit.repository';

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
  ) {}

  /**
   * Writes one event onto `head`, which the caller has locked (see AuditRepository.lockHead). `genesis`
   * allows the initial head, for the event that keys an empty trail.
   */
  async link(q: Queryable, head: AuditHead, event: StoredEvent, opts: { genesis?: boolean } = {}): Promise<{ id: string; hash: Buffer }> {
    let prev = head.hash;
    const problem = await this.headProblem(q, head, opts.genesis === true);
    if (problem) {
      this.log.error(`the audit head's seal does not verify (${problem}): events were cut off the end or the head was replaced; recorded in the trail`);
      const evidence = storedEvent({
        type: 'audit.head_broken',
        actor: null,
        detail: { problem, head_hash: head.hash.toString('hex'), head_key_id: head.key_id },
      });
      prev = (await this.insert(q, prev, evidence)).hash;
    }
    return this.insert(q, prev, event);
  }

  private async insert(q: Queryable, prev: Buffer, event: StoredEvent): Promise<{ id: string; hash: Buffer }> {
    const link = nextLink(this.keys, prev, event.body);
    return { id: await this.repo.insert(q, event, link), hash: link.hash };
  }

  /** Undefined when the head may be extended; the newest event is read only for a head with no seal. */
  private async headProblem(q: Queryable, head: AuditHead, genesis: boolean): Promise<HeadProblem | undefined> {
    if (hasSeal(head)) return sealProblem(this.keys, head);
    return unsealedHeadProblem(head, await this.repo.newestEvent(q), genesis);
  }
}
