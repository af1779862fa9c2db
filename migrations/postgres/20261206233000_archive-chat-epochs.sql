-- The chat archive records each message's epoch beside its offset, so a node can refill a room's
-- Redis history from it after a failover (a promoted replica may lack the last writes): within
-- one epoch an offset names one message. Rows archived before this have the empty epoch.
alter table chat_messages add column epoch text not null default '';
create index chat_messages_by_offset on chat_messages (org_id, room, epoch, room_offset);
