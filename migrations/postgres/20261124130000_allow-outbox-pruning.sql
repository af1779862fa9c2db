-- The relay deletes rows delivered long ago, so the outbox does not grow without bound.
create policy relay_prune on outbox for delete
    using (current_setting('app.outbox_relay', true) = 'on');
