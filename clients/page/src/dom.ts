// DOM building without a framework: h() makes an element from a tag, attributes and children.
// Text always goes in as text nodes, never as HTML, so nothing a user typed can become markup.

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (ev: any) => void;
export interface Attrs {
  [name: string]: string | number | boolean | null | undefined | Handler;
}

/** `h('button', { testid: 'send', onclick: fn, disabled: true }, 'Send')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (typeof value === 'function') el.addEventListener(name.slice(2), value);
      else if (name === 'testid') el.setAttribute('data-testid', String(value));
      else if (name === 'class') el.className = String(value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A labelled form control: `<label>Text <input …></label>` keeps label and field together. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLLabelElement {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control, hint ? h('small', { class: 'hint' }, hint) : null);
}

/** An inline error line for a form; set its text to show a problem, empty to clear it. */
export function errorLine(testid: string): HTMLParagraphElement {
  return h('p', { class: 'form-error', role: 'alert', testid, 'aria-live': 'assertive' });
}

/** Runs `work` with `button` disabled (and its text swapped) until it settles. */
export async function busy<T>(button: HTMLButtonElement, pendingText: string, work: () => Promise<T>): Promise<T> {
  const text = button.textContent;
  button.disabled = true;
  button.textContent = pendingText;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.textContent = text;
  }
}

export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}
