import { html, uiUrl } from '../../src/console/html';

describe('console html templates', () => {
  it('escapes every interpolated value unless it is itself a template', () => {
    const hostile = `"><script>alert('x')</script>&`;
    const out = html`<td title="${hostile}">${hostile}</td>`.text;
    expect(out).toBe('<td title="&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;">&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</td>');
    expect(out).not.toContain('<script>');
    expect(html`<p>${html`<b>${hostile}</b>`}</p>`.text).toBe('<p><b>&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</b></p>');
  });

  it('renders arrays, numbers, and nothing for null, undefined and booleans', () => {
    expect(html`${[1, '<', html`<i>`]}|${null}|${undefined}|${false}|${true}|${0}`.text).toBe('1&lt;<i>|||||0');
  });

  it('builds console URLs only, with segments and query values encoded', () => {
    expect(uiUrl('/ui/leases', { run_id: 'a b&c', owner: undefined, role: '' })).toBe('/ui/leases?run_id=a+b%26c');
    expect(uiUrl('/ui/rotations', { id: ['rot_a', 'rot_b'] })).toBe('/ui/rotations?id=rot_a&id=rot_b');
    expect(() => uiUrl('javascript:alert(1)')).toThrow('not a console path');
    expect(() => uiUrl('//evil.example/ui/')).toThrow('not a console path');
  });
});
