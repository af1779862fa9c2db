-- Organizers list a session's tickets (GET /sessions/{id}/tickets), newest last.
create index tickets_by_session on tickets (org_id, session_id, id);
