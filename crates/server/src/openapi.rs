//! The OpenAPI 3 document, generated from the handlers' annotations.

use crate::api;
use crate::error::{Problem, ProblemField};
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "citycard", description = "City citizen card platform API (市民卡平台接口)"),
    paths(
        api::sign_in, api::sign_out, api::me,
        api::residents_search, api::resident_get, api::resident_history, api::residents_import,
        api::feeds, api::operators_list, api::operators_create, api::tokens_create,
        api::audit_list, api::audit_verify,
    ),
    components(schemas(Problem, ProblemField)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-in and credentials"),
        (name = "residents", description = "Resident base database (一库)"),
        (name = "operators", description = "Operators and API tokens"),
        (name = "audit", description = "The hash-chained audit log"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
