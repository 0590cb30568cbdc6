/** The audit trail's shards: which head an append locks, keying new shards at start-up, and the walk over every shard. */
import { Logger } from '@nestjs/common';
import { Queryable } from '../storage/database';
import { ChainWalk, SEAL_LEGACY_HINT, Walk, WalkOptions, ZERO } from './audit-chain';
import { storedEvent } from './audit-event';
import { AuditKeys } from './audit-keys';
import { AuditWriter } from './audit-writer';
import { AuditRepository, ShardHead } from './audit.repository';

/**
 * The trail is `audit.shards` independent keyed chains, each with its own head row (audit_head.id is
 * the shard) and its own heartbeats, so concurrent appends lock different heads instead of queueing on
 * one. Shard 1 is the chain from before sharding (with its unkeyed prefix, if any); every other shard
 * starts with an `audit.keyed` event whose hash an `audit.shards` event in shard 1 records, written in
 * the same transaction that creates the shard's head. Verify walks every shard with the single-chain
 * rules (ChainWalk), and checks each later shard's start against that record, so a shard cannot be
 * removed, emptied or made anew unnoticed.
 *
 * The number of shards only grows: raising audit.shards adds shards at the next start; lowering it
 * changes nothing (every existing shard stays in use, heartbeated and verified), since retiring a
 * shard would leave its tail without heartbeats.
 */
/**
 * A head a caller's own statement already tried to pick (PICK_HEAD from `from`, see pickHeadSql) in the
 * transaction: `head` undefined when every head was held, and lockForAppend goes on to its fallbacks.
 */
export interface PickedHead {
  from: number;
  head: ShardHead | undefined;
}

export class AuditShards {
  /** The number of shards, as last seen (start-up, then every heartbeat tick). */
  count = 1;
  private next = Math.floor(Math.random() * 1024);
  /** The shard each caller's transaction client locked last: a transaction that appends again re-locks the head it holds. */
  private readonly preferred = new WeakMap<object, number>();

  constructor(
    private readonly keys: AuditKeys,
    private readonly repo: AuditRepository,
    private readonly writer: AuditWriter,
    private readonly log: Logger,
    /** audit.shards */
    private readonly configured: number,
  ) {}

  /**
   * Locks a head for an append: the first that no other transaction holds, starting from the next
   * shard in turn (or, in a caller's transaction, from the shard it locked last, so one transaction
   * never holds two heads); when every head is held, waits for that first shard's.
   */
  async lockForAppend(tx: Queryable, callerTx: boolean, picked?: PickedHead): Promise<ShardHead> {
    // `picked` comes only from the first statement of a transaction (Database.txStartingWith), which
    // holds no head before it.
    const from = picked?.from ?? (callerTx ? this.preferred.get(tx) : undefined) ?? this.firstChoice();
    const tried = picked ? picked.head : await this.repo.pickHead(tx, from);
    const head = tried ?? (await this.repo.lockHead(tx, from)) ?? (await this.repo.lockHead(tx, 1));
    if (!head) throw new Error('the audit head of shard 1 is missing: the trail was tampered with');
    if (callerTx) this.preferred.set(tx, head.shard);
    this.count = Math.max(this.count, head.shard);
    return head;
  }

  /** The shard a new transaction's append tries first: the shards in turn. */
  firstChoice(): number {
    return 1 + (this.next++ % Math.max(1, this.count));
  }

  /**
   * Start-up, in one transaction: keys an empty trail (shard 1), creates the missing shards up to
   * audit.shards with their `audit.keyed` events and records them in shard 1. Nothing else is sealed:
   * problems are logged, and verify reports them. Holds shard 1's head throughout, so replicas starting
   * together create each shard once.
   */
  async open(tx: Queryable): Promise<void> {
    let first = await this.repo.lockHead(tx, 1);
    if (!first) throw new Error('the audit head of shard 1 is missing: the trail was tampered with');
    const oldest = await this.repo.oldestEvent(tx, 1);
    if (!oldest) {
      if (!first.seal && first.hash.equals(ZERO)) {
        first = (await this.writer.link(tx, first, storedEvent({ type: 'audit.keyed', actor: null, detail: { key_id: this.keys.currentId } }), { genesis: true })).head;
      } else {
        this.log.error('the first audit shard is empty but its head is not the initial one: events were deleted; GET /v1/audit/verify reports it');
      }
    } else if (oldest.key_id === null && !(await this.repo.hasLegacyBoundary(tx))) {
      this.log.error(`the audit trail starts with events written before it was keyed and not accepted by an operator: GET /v1/audit/verify reports not ok until then; ${SEAL_LEGACY_HINT}`);
    } else if (!first.seal) {
      this.log.error('the audit head is not sealed although the trail has keyed events: events may have been cut off the end; the next event records this and GET /v1/audit/verify reports it');
    }

    const created = await this.repo.createHeads(tx, this.configured);
    const genesis: Record<string, string> = {};
    for (const shard of created) {
      const head = (await this.repo.lockHead(tx, shard))!;
      const event = storedEvent({ type: 'audit.keyed', actor: null, detail: { key_id: this.keys.currentId, shard } });
      genesis[shard] = (await this.writer.link(tx, head, event, { genesis: true })).hash.toString('hex');
    }
    if (created.length) await this.writer.link(tx, first, storedEvent({ type: 'audit.shards', actor: null, detail: { shards: genesis } }));

    const heads = await this.repo.readHeads(tx);
    this.count = heads.length;
    if (heads.length > this.configured) this.log.warn(`the audit trail has ${heads.length} shards, more than audit.shards (${this.configured}): all stay in use; shards are never removed`);
  }

  /**
   * Walks every shard: shard 1 first (which records the others' creation), then every shard that has
   * a head, events, or a recorded creation. `optsFor` gives a shard's heartbeat options. Returns the
   * first shard's fault (its reason names the shard), or shard 1's walk with every shard's events
   * counted. With ignoreLegacy (seal-legacy), shard 1 may end unsealed, at its unkeyed end.
   */
  async walk(q: Queryable, optsFor: (shard: number) => WalkOptions, now: () => number = Date.now): Promise<Walk> {
    const heads = new Map((await this.repo.readHeads(q)).map((h) => [h.shard, h]));
    const first = await this.walkShard(q, 1, heads.get(1), optsFor(1), now);
    if (!first.ok && !(optsFor(1).ignoreLegacy && first.broken === 'unsealed')) return first;
    const created = first.created ?? new Map<number, Buffer>();
    const shards = new Set([...heads.keys(), ...(await this.repo.shardsWithEvents(q)), ...created.keys()]);
    shards.delete(1);
    let checked = first.events_checked;
    for (const shard of [...shards].sort((a, b) => a - b)) {
      const walk = await this.walkShard(q, shard, heads.get(shard), { ...optsFor(shard), laterShard: { genesis: created.get(shard) } }, now);
      if (!walk.ok) return { ...walk, events_checked: checked + walk.events_checked, keyed: first.keyed, legacy: first.legacy };
      checked += walk.events_checked;
    }
    return { ...first, events_checked: checked };
  }

  private async walkShard(q: Queryable, shard: number, head: ShardHead | undefined, opts: WalkOptions, now: () => number): Promise<Walk> {
    const walk = new ChainWalk(this.keys, opts);
    let result: Walk | undefined;
    for await (const rows of this.repo.pages(q, shard)) {
      for (const row of rows) {
        result = walk.add(row);
        if (result) break;
      }
      if (result) break;
    }
    result ??= walk.end(head, now());
    return result.ok ? result : { ...result, reason: `shard ${shard}: ${result.reason}` };
  }
}
