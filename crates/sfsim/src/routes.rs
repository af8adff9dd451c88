//! The route table of each kind of host: OAuth, identity and discovery everywhere, the REST API on
//! My Domains, the control API on the production login host. Wiring only: no behaviour here.

use axum::Router;
use axum::routing::{get, post};

use crate::server::{AppState, HostKind};
use crate::{control, identity, oauth, rest};

pub(crate) fn router(kind: &HostKind) -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/services/oauth2/authorize",
            get(oauth::authorize::handle).post(oauth::authorize::handle),
        )
        .route("/services/oauth2/token", post(oauth::token::handle))
        .route(
            "/services/oauth2/revoke",
            get(oauth::revoke::handle).post(oauth::revoke::handle),
        )
        .route(
            "/services/oauth2/introspect",
            post(oauth::introspect::handle),
        )
        .route(
            "/services/oauth2/userinfo",
            get(identity::userinfo).post(identity::userinfo),
        )
        .route("/id/{org_id}/{user_id}", get(identity::identity))
        .route(
            "/.well-known/openid-configuration",
            get(identity::discovery),
        );
    match kind {
        HostKind::MyDomain(_) => router = router.merge(rest::routes()),
        HostKind::Production => router = router.merge(control::routes()),
        HostKind::Sandbox => {}
    }
    router
}
