// A view's lifetime: everything it subscribed to or started is undone in one dispose().

export class Scope {
  private disposers: Array<() => void> = [];
  private done = false;

  /** Registers an undo (an unsubscribe function, a clearInterval, a room.leave()). */
  add(fn: () => void): void {
    if (this.done) fn();
    else this.disposers.push(fn);
  }

  get disposed(): boolean {
    return this.done;
  }

  dispose(): void {
    if (this.done) return;
    this.done = true;
    for (const fn of this.disposers.splice(0).reverse()) {
      try {
        fn();
      } catch (e) {
        console.error(e);
      }
    }
  }
}
