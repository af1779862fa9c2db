// Sign-in. In development mode: a plain warning and a name + role form that mints a demo token.
// Otherwise: a field to paste a token. The token stays in this tab only.

import { busy, errorLine, field, h } from './dom.ts';
import { type Identity, USER_ID_PATTERN, identityFromToken, mintDevToken } from './identity.ts';
import type { PageConfig } from './config.ts';
import type { Role } from './types.ts';

export function signInView(config: PageConfig, onSignedIn: (id: Identity) => void, reason?: string): HTMLElement {
  const error = errorLine('signin-error');
  if (reason) error.textContent = reason;
  return config.dev_mode ? devForm(onSignedIn, error) : tokenForm(onSignedIn, error);
}

function devForm(onSignedIn: (id: Identity) => void, error: HTMLElement): HTMLElement {
  const user = h('input', {
    name: 'user',
    testid: 'signin-user',
    required: true,
    autocomplete: 'username',
    maxlength: 128,
    placeholder: 'e.g. alice',
    spellcheck: 'false',
  });
  const role = h(
    'select',
    { name: 'role', testid: 'signin-role' },
    h('option', { value: 'attendee' }, 'Attendee'),
    h('option', { value: 'organizer' }, 'Organizer'),
    h('option', { value: 'owner' }, 'Owner'),
  );
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'signin-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card signin', 'aria-labelledby': 'signin-title', onsubmit: submitted },
    h('h2', { id: 'signin-title' }, 'Sign in'),
    h('p', { class: 'banner warn', role: 'note', testid: 'dev-banner' }, 'Development mode: demo sign-in, do not use in production'),
    field('Your name', user, 'Letters, digits and punctuation, no spaces. Two windows can be two people.'),
    field('Role', role),
    error,
    h('div', { class: 'actions' }, submit),
  );

  async function submitted(ev: Event) {
    ev.preventDefault();
    const name = user.value.trim();
    if (!USER_ID_PATTERN.test(name)) {
      error.textContent = 'Use 1 to 128 letters, digits or punctuation, without spaces, { or }.';
      user.focus();
      return;
    }
    error.textContent = '';
    try {
      const id = await busy(submit, 'Signing in…', () => mintDevToken(name, role.value as Role));
      onSignedIn(id);
    } catch (e) {
      error.textContent = 'Sign-in failed: ' + (e instanceof Error ? e.message : String(e));
    }
  }
  return form;
}

function tokenForm(onSignedIn: (id: Identity) => void, error: HTMLElement): HTMLElement {
  const token = h('textarea', { name: 'token', testid: 'signin-token', required: true, rows: 4, spellcheck: 'false', placeholder: 'eyJhbGciOi…' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'signin-token-submit' }, 'Use this token');
  return h(
    'form',
    {
      class: 'card signin',
      'aria-labelledby': 'signin-title',
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        try {
          onSignedIn(identityFromToken(token.value.trim()));
        } catch (e) {
          error.textContent = e instanceof Error ? e.message : String(e);
        }
      },
    },
    h('h2', { id: 'signin-title' }, 'Sign in'),
    h('p', null, 'Paste a token issued for you (a JWT with your user, org and role).'),
    field('Token', token),
    error,
    h('div', { class: 'actions' }, submit),
  );
}
