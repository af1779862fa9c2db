// A small typed event emitter: on() returns its own unsubscribe function, and a listener that
// throws is reported (reportError, or rethrown on a fresh task) without breaking the SDK's
// bookkeeping or the other listeners.

type Listener<T> = (arg: T) => void;

export class Emitter<Events extends object> {
  private listeners: { [K in keyof Events]?: Array<Listener<Events[K]>> } = {};

  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    (this.listeners[event] ||= []).push(fn);
    return () => {
      const list = this.listeners[event];
      const i = list ? list.indexOf(fn) : -1;
      if (i >= 0) list!.splice(i, 1);
    };
  }

  emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const list = this.listeners[event];
    if (!list) return;
    for (const fn of list.slice()) {
      try {
        fn(arg);
      } catch (e) {
        report(e);
      }
    }
  }
}

function report(e: unknown): void {
  const g = globalThis as any;
  if (typeof g.reportError === 'function') g.reportError(e);
  else
    setTimeout(() => {
      throw e;
    }, 0);
}
