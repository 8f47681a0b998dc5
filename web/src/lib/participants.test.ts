import { describe, expect, it } from 'vitest';
import { Participants } from './participants';

describe('Participants', () => {
  it('starts from welcome and follows joins, renames and leaves', () => {
    const p = new Participants();
    p.reset({ participants: ['Grace', 'Ada'], num_participants: 2 });
    expect(p.list()).toEqual(['Ada', 'Grace']);
    p.apply({ joined: ['guest-4'], left: [], renamed: [{ from: 'guest-4', to: 'Barbara' }], num_participants: 3 });
    expect(p.list()).toEqual(['Ada', 'Barbara', 'Grace']);
    p.apply({ joined: [], left: ['Grace'], renamed: [], num_participants: 2 });
    expect(p.list()).toEqual(['Ada', 'Barbara']);
    expect(p.total).toBe(2);
  });

  it('adds members not yet announced, ourselves included, from the next update', () => {
    const p = new Participants();
    // Bob joined just before us: the welcome lists only announced members,
    // and the next coalesced update announces both of us.
    p.reset({ participants: ['Ada'], num_participants: 3 });
    p.apply({ joined: ['Bob', 'Me'], left: [], renamed: [], num_participants: 3 });
    expect(p.list()).toEqual(['Ada', 'Bob', 'Me']);
    // A second member with a name already present is a second entry.
    p.apply({ joined: ['Bob'], left: [], renamed: [], num_participants: 4 });
    expect(p.list()).toEqual(['Ada', 'Bob', 'Bob', 'Me']);
  });

  it('keeps duplicate names as separate members', () => {
    const p = new Participants();
    p.reset({ participants: ['guest', 'guest'], num_participants: 2 });
    p.apply({ joined: [], left: ['guest'], renamed: [], num_participants: 1 });
    expect(p.list()).toEqual(['guest']);
  });

  it('counts members the welcome did not name', () => {
    const p = new Participants();
    p.reset({ participants: ['a', 'b'], num_participants: 500 });
    expect(p.unnamed).toBe(498);
    // Leaves of unknown names are ignored; the count comes from the server.
    p.apply({ joined: [], left: ['zed'], renamed: [{ from: 'nobody', to: 'x' }], num_participants: 499 });
    expect(p.list()).toEqual(['a', 'b']);
    expect(p.total).toBe(499);
  });
});
