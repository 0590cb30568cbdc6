/** The audit chain's rules over rows, without I/O: each event's link, the head's seal, and the walk that verifies a trail. */
import { createHash } from 'node:crypto';
import { AuditKeys } from './audit-keys';

/** The initial head, and the previous hash of the first event. */
export const ZERO: Buffer = Buffer.alloc(32);

export const SEAL_LEGACY_HINT = 'run `tessera audit seal-legacy` once you know they were not rewritten';

/** The audit_head row: the newest event's hash, and the seal over it under the key key_id names. */
export interface AuditHead {
  hash: Buffer;
  key_id: string | null;
  seal: Buffer | null;
}

/** An audit_events row as verify reads it. */
export interface AuditRow {
  id: string;
  at: Date;
  type: string;
  actor: string | null;
  lease_id: string | null;
  body: string;
  prev_hash: Buffer;
  hash: Buffer;
  key_id: string | null;
}

/** A heartbeat as a process saw it in the chain: its row (id and hash) and its time. */
export interface Heartbeat {
  id: string;
  hash: Buffer;
  at: string;
}

export interface AuditVerification {
  ok: boolean;
  events_checked: number;
  first_bad_id?: string;
  /** Why the trail does not verify (present when ok is false). */
  reason?: string;
}

/** A walk's result: the public answer plus what seal-legacy needs to know. */
export interface Walk extends AuditVerification {
  /** Which check failed: a link ('chain'), the unaccepted prefix, the head's seal, or the tail's heartbeats. */
  broken?: 'chain' | 'legacy' | 'unsealed' | 'tail';
  /** Whether the trail has keyed events. */
  keyed: boolean;
  /** The unkeyed prefix, if any. */
  legacy?: { firstId: string; endId: string; endHash: Buffer; count: number; accepted: boolean };
  /** The shards whose creation this walk's `audit.shards` events recorded (shard 1 only): their first events' hashes. */
  created?: Map<number, Buffer>;
}

/** Why a head may not be extended without first recording that it is broken. */
export type HeadProblem = 'seal_invalid' | 'seal_key_unknown' | 'trail_emptied' | 'seal_missing';

/** A new event's link onto `prev` under the current key, and the head's seal over that link. */
export function nextLink(keys: AuditKeys, prev: Buffer, body: string): { prev: Buffer; hash: Buffer; keyId: string; seal: Buffer } {
  const hash = keys.link(prev, body)!;
  return { prev, hash, keyId: keys.currentId, seal: keys.seal(hash)! };
}

/**
 * The hash a stored row must have after `prev`: the MAC under the key its key_id names (undefined when
 * that key is unknown); plain SHA-256 only before the first keyed event, and never for the chain's own events.
 */
export function expectedLink(keys: AuditKeys, row: Pick<AuditRow, 'key_id' | 'type' | 'body'>, prev: Buffer, keyed: boolean): Buffer | undefined {
  if (row.key_id !== null) return keys.link(prev, row.body, row.key_id);
  if (keyed || row.type.startsWith('audit.')) return undefined;
  return createHash('sha256').update(prev).update(row.body, 'utf8').digest();
}

/** Whether the head carries a seal or a key id; one without either is judged by unsealedHeadProblem. */
export function hasSeal(head: AuditHead): boolean {
  return Boolean(head.seal || head.key_id);
}

/** For a head with a seal or key id: undefined when the seal verifies, otherwise what is wrong with it. */
export function sealProblem(keys: AuditKeys, head: AuditHead): HeadProblem | undefined {
  if (head.seal && head.key_id) {
    const expected = keys.seal(head.hash, head.key_id);
    if (expected?.equals(head.seal)) return undefined;
    return expected ? 'seal_invalid' : 'seal_key_unknown';
  }
  return 'seal_invalid';
}

/**
 * For a head with no seal, given the trail's newest event (undefined when the trail is empty): undefined
 * when it may be extended, because it is the initial head and this is the genesis event, or the unkeyed
 * end of a trail from before keying (verify then asks for the operator's acceptance of that prefix).
 */
export function unsealedHeadProblem(head: AuditHead, newest: { hash: Buffer; key_id: string | null } | undefined, genesis: boolean): HeadProblem | undefined {
  if (!newest) return genesis && head.hash.equals(ZERO) ? undefined : 'trail_emptied';
  if (newest.key_id === null && newest.hash.equals(head.hash)) return undefined;
  return 'seal_missing';
}

export interface WalkOptions {
  /** The heartbeat this process saw last: it must still be in the chain. */
  seen?: Heartbeat;
  /** audit.heartbeat_every in ms, when a running broker requires a recent heartbeat; omitted otherwise. */
  heartbeatEveryMs?: number;
  /** Do not fail on an unaccepted unkeyed prefix (seal-legacy inspects it instead). */
  ignoreLegacy?: boolean;
  /**
   * Set for every shard but the first: such a shard has no unkeyed events, and its first event is the
   * one whose hash its creation recorded in shard 1 (genesis; undefined when none did).
   */
  laterShard?: { genesis: Buffer | undefined };
}

/**
 * Verifies a trail fed to it in id order: add() each row (the first fault ends the walk), then end()
 * with the head row. The rules, in chain order:
 * - every link is the MAC of the previous hash and the event's text under the key its key_id names,
 *   and the event's columns match its text;
 * - unkeyed events (plain SHA-256 links) only as a prefix, accepted only when a later keyed
 *   `audit.keyed` event records that prefix's last event (id and hash) as its legacy_boundary; the
 *   chain's own events (`audit.*`) are never unkeyed; without a prefix the chain starts with `audit.keyed`;
 * - an `audit.head_broken` event (an append found the head's seal invalid) fails verify;
 * - heartbeats: each records the time of the heartbeat before it as its writer knew it. The writer
 *   reads it from the chain, unless the heartbeat it saw last is gone from the chain, in which case it
 *   records that one: so a heartbeat whose previous_at is not the previous heartbeat's time in the
 *   chain proves that events were cut off before it (durable evidence, also after restarts). The
 *   `started` flag only tells that its writer had just started and so remembered nothing.
 * Then, at the end:
 * - the head is sealed under the key over the last event's hash (or events were cut off the end);
 * - (a running broker only) the heartbeat this process saw last is still in the chain (so a cut tail
 *   is reported even before the next heartbeat), and the newest heartbeat is less than
 *   2 × audit.heartbeat_every old: every running broker writes one at start and then whenever the
 *   newest is heartbeat_every old, so an idle but running broker passes, and a head restored from
 *   longer ago does not.
 * Shards: the trail is several such chains (see AuditShards), each walked on its own. Only the first
 * may have an unkeyed prefix; every other one starts with the `audit.keyed` event whose hash an
 * `audit.shards` event in the first shard recorded when the shard was created, and a shard recorded
 * as created twice fails (its first events were removed and the shard made anew).
 * Consecutive heartbeats far apart are not a fault by themselves: a broker that was stopped, or could
 * not reach PostgreSQL, leaves such a gap legitimately, and a cut tail is already caught above while a
 * broker that saw it runs. What this cannot catch: events cut off the end since the newest heartbeat
 * any running broker saw, and a tail cut while no broker was running (every process restarts with an
 * empty memory); nor a trail deleted entirely, head reset to its initial value, before the next start.
 */
export class ChainWalk {
  private prev: Buffer = ZERO;
  private prevKeyId: string | null = null;
  private keyed = false;
  private checked = 0;
  private after = '0';
  private legacy: Walk['legacy'];
  private lastHeartbeatAt: string | null = null;
  private seenKept = false;
  private readonly created = new Map<number, Buffer>();

  constructor(
    private readonly keys: AuditKeys,
    private readonly opts: WalkOptions = {},
  ) {}

  /** Checks the next row; returns the failed walk at the first fault, undefined while all is well. */
  add(row: AuditRow): Walk | undefined {
    const id = String(row.id);
    const later = this.opts.laterShard;
    if (later && row.key_id === null) return this.bad(id, 'an unkeyed event outside the first shard');
    const body = parseBody(row.body);
    const expected = expectedLink(this.keys, row, this.prev, this.keyed);
    if (!expected || !row.prev_hash.equals(this.prev) || !row.hash.equals(expected) || !body || !matchesColumns(row, body)) {
      const reason =
        row.key_id !== null || !(this.keyed || row.type.startsWith('audit.'))
          ? 'the event does not chain: it was edited, inserted or moved, or one before it deleted'
          : this.keyed
            ? 'an unkeyed event after keyed ones'
            : 'an unkeyed event of the chain itself: the trail was rewritten';
      return this.bad(id, reason);
    }
    const detail = (body.detail ?? {}) as Record<string, any>;
    if (later && this.checked === 0 && !(later.genesis && row.hash.equals(later.genesis))) {
      return this.bad(id, 'the shard does not start with the event its creation recorded in shard 1: the shard was replaced, or events at its start were removed');
    }
    if (row.type === 'audit.shards' && row.key_id !== null) {
      for (const [shard, hash] of Object.entries((detail.shards ?? {}) as Record<string, unknown>)) {
        if (this.created.has(Number(shard))) return this.bad(id, `shard ${shard} was created again: the events it had were removed`);
        this.created.set(Number(shard), Buffer.from(String(hash), 'hex'));
      }
    }
    if (row.key_id === null) {
      const legacy = this.legacy;
      this.legacy = { firstId: legacy?.firstId ?? id, endId: id, endHash: row.hash, count: (legacy?.count ?? 0) + 1, accepted: false };
    } else {
      if (!this.keyed && !this.legacy && row.type !== 'audit.keyed') return this.bad(id, 'the keyed trail does not start with audit.keyed: events before it were removed');
      this.keyed = true;
      if (row.type === 'audit.keyed' && detail.legacy_boundary !== undefined) {
        const boundary = detail.legacy_boundary as { id?: unknown; hash?: unknown };
        if (!this.legacy || boundary.id !== this.legacy.endId || boundary.hash !== this.legacy.endHash.toString('hex')) {
          return this.bad(id, 'the accepted legacy boundary is not the end of the unkeyed events');
        }
        this.legacy.accepted = true;
      }
      if (row.type === 'audit.head_broken') {
        return this.bad(id, `an event was appended onto a head whose seal did not verify (${String(detail.problem)}): events were cut off the end or the head was replaced`);
      }
    }
    if (row.type === 'audit.heartbeat') {
      if (row.key_id !== null && (detail.previous_at ?? null) !== this.lastHeartbeatAt) {
        return this.bad(id, `this heartbeat follows one of ${String(detail.previous_at)} that is no longer in the trail: events were cut off before it`);
      }
      this.lastHeartbeatAt = body.at;
    }
    if (this.opts.seen && id === this.opts.seen.id && row.hash.equals(this.opts.seen.hash)) this.seenKept = true;
    this.prev = row.hash;
    this.prevKeyId = row.key_id;
    this.checked++;
    this.after = id;
    return undefined;
  }

  /** The checks at the end of the trail, given the head row (undefined when it is missing) and the time now (ms). */
  end(head: AuditHead | undefined, now: number): Walk {
    const end = String(Number(this.after) + 1);
    const { legacy, opts } = this;
    if (legacy && !legacy.accepted && !opts.ignoreLegacy) {
      return this.bad(legacy.firstId, `${legacy.count} events from before the chain was keyed have not been accepted by an operator; ${SEAL_LEGACY_HINT}`, 'legacy');
    }
    // A head that is not the last event's, or not sealed under the key: events were removed from the
    // end (or the whole keyed chain replaced).
    const seal = this.prevKeyId === null ? undefined : this.keys.seal(this.prev, this.prevKeyId);
    const sealed = head && seal && head.seal && head.key_id === this.prevKeyId && head.hash.equals(this.prev) && head.seal.equals(seal);
    if (!this.keyed) return this.bad(end, this.checked ? 'no keyed events' : 'the trail is empty', 'unsealed');
    if (!sealed) return this.bad(end, 'the head is not sealed over the last event: events were cut off the end', 'unsealed');
    if (opts.seen && !this.seenKept) {
      return this.bad(end, `the heartbeat of ${opts.seen.at} (event ${opts.seen.id}) this broker saw is gone: events were cut off the end`, 'tail');
    }
    const everyMs = opts.heartbeatEveryMs;
    if (everyMs !== undefined && (this.lastHeartbeatAt === null || now - Date.parse(this.lastHeartbeatAt) > 2 * everyMs)) {
      return this.bad(
        end,
        `no heartbeat since ${this.lastHeartbeatAt ?? 'the start'} (audit.heartbeat_every is ${everyMs / 1000}s): events were cut off the end, or heartbeats are not being written`,
        'tail',
      );
    }
    return { ok: true, events_checked: this.checked, keyed: this.keyed, legacy, created: this.created.size ? this.created : undefined };
  }

  private bad(id: string, reason: string, broken: Walk['broken'] = 'chain'): Walk {
    return { ok: false, events_checked: this.checked, first_bad_id: id, reason, broken, keyed: this.keyed, legacy: this.legacy };
  }
}

function parseBody(text: string): Record<string, any> | undefined {
  try {
    const body = JSON.parse(text);
    return body !== null && typeof body === 'object' ? body : undefined;
  } catch {
    return undefined;
  }
}

function matchesColumns(row: { at: Date; type: string; actor: string | null; lease_id: string | null }, body: Record<string, any>): boolean {
  return body.type === row.type && body.actor === row.actor && body.lease_id === row.lease_id && new Date(body.at).getTime() === row.at.getTime();
}
