//! The OpenAPI 3 document, generated from the handlers and types, served at
//! `/api/v1/openapi.json`.

use crate::error::{FieldError, Problem};
use crate::routes::{chat, events, orgs, polls, questions, sessions, tickets, waitlist};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "evd REST API",
        description = "Orgs, events, sessions, tickets, waitlists, polls, questions and the chat \
                       archive. Every call is scoped to the org of the bearer token; ids of \
                       another org answer 404. Errors are application/problem+json."
    ),
    servers((url = "/api/v1")),
    paths(
        orgs::create_org, orgs::get_org, orgs::list_members, orgs::add_member,
        orgs::set_member_role, orgs::remove_member, orgs::disconnect_user,
        events::list_events, events::create_event, events::get_event, events::update_event,
        events::delete_event, events::list_sessions, events::create_session,
        sessions::get_session, sessions::update_session, sessions::delete_session,
        tickets::issue_ticket, tickets::list_tickets, tickets::list_session_tickets,
        tickets::get_ticket, tickets::cancel_ticket,
        waitlist::join_waitlist, waitlist::my_entry, waitlist::leave_waitlist,
        waitlist::offer_next, waitlist::list_offers, waitlist::get_offer, waitlist::accept_offer,
        waitlist::decline_offer,
        polls::create_poll, polls::list_polls, polls::get_poll, polls::close_poll,
        polls::poll_results,
        questions::list_questions, questions::hide_question,
        chat::chat_history,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
