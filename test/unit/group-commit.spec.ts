import { GroupCommit, ItemFailed } from '../../plugins/contract/group-commit';

/** A run whose batches the test releases by hand. */
function gated() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const run = (items: number[]) => {
    batches.push(items);
    return new Promise<(number | ItemFailed)[]>((resolve) => gates.push(() => resolve(items.map((i) => (i < 0 ? new ItemFailed(new Error(`bad ${i}`)) : i * 10)))));
  };
  return { batches, gates, run };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('GroupCommit', () => {
  it('serves a lone caller at the end of its turn, in a batch of one', async () => {
    const g = gated();
    const gc = new GroupCommit(g.run, { maxBatch: 10, inFlight: 1 });
    const p = gc.submit(1);
    expect(g.batches).toEqual([]);
    await tick();
    expect(g.batches).toEqual([[1]]);
    g.gates[0]();
    await expect(p).resolves.toBe(10);
  });

  it('puts what is asked within one turn in one batch; what arrives while it runs forms the next, up to maxBatch', async () => {
    const g = gated();
    const gc = new GroupCommit(g.run, { maxBatch: 3, inFlight: 1 });
    const first = [1, 2].map((i) => gc.submit(i));
    await tick();
    expect(g.batches).toEqual([[1, 2]]);
    const later = [3, 4, 5, 6, 7].map((i) => gc.submit(i));
    await tick();
    expect(g.batches).toEqual([[1, 2]]);
    g.gates[0]();
    await tick();
    expect(g.batches).toEqual([[1, 2], [3, 4, 5]]);
    g.gates[1]();
    await tick();
    expect(g.batches).toEqual([[1, 2], [3, 4, 5], [6, 7]]);
    g.gates[2]();
    await expect(Promise.all([...first, ...later])).resolves.toEqual([10, 20, 30, 40, 50, 60, 70]);
  });

  it('runs up to inFlight batches at once, starting as many as are free at the end of a turn', async () => {
    const g = gated();
    const gc = new GroupCommit(g.run, { maxBatch: 2, inFlight: 2 });
    [1, 2, 3, 4, 5].forEach((i) => void gc.submit(i));
    await tick();
    expect(g.batches).toEqual([[1, 2], [3, 4]]);
    g.gates[0]();
    await tick();
    expect(g.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('a slot left free starts a batch for what comes in a later turn', async () => {
    const g = gated();
    const gc = new GroupCommit(g.run, { maxBatch: 10, inFlight: 2 });
    void gc.submit(1);
    await tick();
    void gc.submit(2);
    void gc.submit(3);
    await tick();
    expect(g.batches).toEqual([[1], [2, 3]]);
  });

  it('fails only the item whose answer is ItemFailed', async () => {
    const g = gated();
    const gc = new GroupCommit(g.run, { maxBatch: 10, inFlight: 1 });
    const all = [2, -3, 4].map((i) => gc.submit(i).then((v) => ({ v }), (e: Error) => ({ e: e.message })));
    await tick();
    g.gates[0]();
    await expect(Promise.all(all)).resolves.toEqual([{ v: 20 }, { e: 'bad -3' }, { v: 40 }]);
  });

  it('fails every item of a batch whose run throws, and goes on with the next', async () => {
    let calls = 0;
    const gc = new GroupCommit<number, number>(async (items) => {
      calls++;
      if (calls === 1) throw new Error('down');
      return items;
    }, { maxBatch: 10, inFlight: 1 });
    const failed = [1, 2].map((i) => expect(gc.submit(i)).rejects.toThrow('down'));
    await tick();
    const next = gc.submit(3);
    await Promise.all(failed);
    await expect(next).resolves.toBe(3);
  });

  it('refuses a run that answers the wrong number of items', async () => {
    const gc = new GroupCommit<number, number>(async () => [], { maxBatch: 10, inFlight: 1 });
    await expect(gc.submit(1)).rejects.toThrow('a batch of 1 got 0 answers');
  });

  it('with alone: a batch of one is done alone, and a batch that throws is redone item by item, each failing on its own', async () => {
    const ran: number[][] = [];
    const alone: number[] = [];
    const gc = new GroupCommit<number, number>(
      async (items) => {
        ran.push(items);
        throw new Error('the statement failed');
      },
      { maxBatch: 10, inFlight: 1, alone: async (i) => (alone.push(i), i < 0 ? Promise.reject(new Error(`bad ${i}`)) : i * 10) },
    );
    const first = gc.submit(1);
    await tick();
    const rest = [2, -3, 4].map((i) => gc.submit(i).then((v) => ({ v }), (e: Error) => ({ e: e.message })));
    await expect(first).resolves.toBe(10);
    await expect(Promise.all(rest)).resolves.toEqual([{ v: 20 }, { e: 'bad -3' }, { v: 40 }]);
    expect(ran).toEqual([[2, -3, 4]]);
    expect(alone).toEqual([1, 2, -3, 4]);
  });
});
