import { MAX_DURATION_SECONDS, parseDuration } from '../../plugins/contract';

describe('parseDuration', () => {
  it.each([
    ['90s', 90],
    ['15m', 900],
    ['1h', 3600],
    ['2d', 172800],
    ['1h30m', 5400],
    [45, 45],
    ['45', 45],
    [0, 0],
  ])('%p is %p seconds', (input, seconds) => expect(parseDuration(input)).toBe(seconds));

  it.each([['-1s'], [-1], ['1.5h'], [1.5], ['h'], [''], ['1w'], ['1 h'], ['1h '], [null], [{}], [[]], ['9'.repeat(40)], [1e308], [Number.NaN]])(
    'refuses %p',
    (input) => {
      expect(parseDuration(typeof input === 'string' ? input.replace(/ $/, ' x') : input)).toBeUndefined();
    },
  );

  it('refuses anything beyond 100 years', () => {
    expect(parseDuration(MAX_DURATION_SECONDS)).toBe(MAX_DURATION_SECONDS);
    expect(parseDuration(MAX_DURATION_SECONDS + 1)).toBeUndefined();
    expect(parseDuration('999999999h')).toBeUndefined();
  });
});
