// A bounded memory of ids already seen, for events the store relays at least once (`outbox_id`):
// a repeated id is dropped, and the oldest ids are forgotten past the bound.

/** Outbox ids remembered per client. */
export const OUTBOX_MEMORY = 1024;

export class SeenIds {
  private set = new Set<number | string>();
  private order: Array<number | string> = [];

  constructor(private limit: number = OUTBOX_MEMORY) {}

  /** True the first time `id` is offered, false for a repeat. */
  add(id: number | string): boolean {
    if (this.set.has(id)) return false;
    this.set.add(id);
    this.order.push(id);
    if (this.order.length > this.limit) this.set.delete(this.order.shift()!);
    return true;
  }

  get size(): number {
    return this.set.size;
  }
}
