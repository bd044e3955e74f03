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

/// Every operation can fail with problem details: declare the failures the edge produces for
/// any route (bad request, authentication, role, size, validation, throttling, internal), and
/// give every problem response its real media type, `application/problem+json`.
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        const MEDIA: &str = "application/problem+json";
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let common: [(&str, &str); 8] = [
            ("400", "The request is malformed (body, query or path)"),
            ("401", "No valid credential"),
            ("403", "The caller's role may not do this"),
            ("404", "Not found"),
            ("413", "The request body is too large"),
            ("422", "A field is invalid; `errors` names it"),
            ("429", "Too many failed sign-ins"),
            ("500", "Internal error (logged; no details returned)"),
        ];
        for item in doc.paths.paths.values_mut() {
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                for (_, resp) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = resp
                        && let Some(c) = r.content.shift_remove("application/json")
                    {
                        let is_problem = matches!(&c.schema, Some(RefOr::Ref(x)) if x.ref_location.ends_with("/Problem"));
                        if is_problem {
                            r.content.insert(MEDIA.to_string(), c);
                        } else {
                            r.content.insert("application/json".to_string(), c);
                        }
                    }
                }
                for (code, text) in common {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(text)
                                    .content(MEDIA, problem())
                                    .build(),
                            )
                        });
                }
            }
        }
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
        crate::cards_api::apply, crate::cards_api::list, crate::cards_api::get,
        crate::cards_api::act, crate::cards_api::events, crate::cards_api::deny_changes,
        crate::cards_api::deny_full, crate::cards_api::deny_delta, crate::cards_api::deny_key,
        crate::cards_api::enrol, crate::cards_api::enrolments,
        crate::ecode_api::enrol, crate::ecode_api::devices, crate::ecode_api::revoke,
        crate::ecode_api::certify, crate::ecode_api::roots_pem, crate::ecode_api::root_generate,
        crate::ecode_api::root_rotate, crate::ecode_api::root_withdraw, crate::ecode_api::verify,
        crate::ecode_api::identity, crate::ecode_api::identity_uses,
        crate::ledger_api::card_balances, crate::ledger_api::check,
        crate::purchases_api::upload,
        crate::production_api::outlets, crate::production_api::outlet_create,
        crate::production_api::clerk_assign, crate::production_api::stock,
        crate::production_api::journal, crate::production_api::close_day,
        crate::production_api::hand_over, crate::production_api::report_lost,
        crate::production_api::replace, crate::production_api::batches,
        crate::production_api::batch_create, crate::production_api::batch,
        crate::production_api::export, crate::production_api::import,
        crate::production_api::distribute,
        crate::apps_api::registry, crate::apps_api::register_app,
        crate::apps_api::register_function, crate::apps_api::card_functions,
        crate::apps_api::script, crate::apps_api::confirm,
        crate::apps_api::contact, crate::apps_api::contact_confirm,
        crate::apps_api::chip_updates,
        crate::disbursements_api::submit, crate::disbursements_api::list,
        crate::disbursements_api::one, crate::disbursements_api::lines,
        crate::disbursements_api::decide, crate::disbursements_api::pay,
        crate::disbursements_api::fund, crate::disbursements_api::received,
        crate::terminals_api::merchant_create, crate::terminals_api::merchants,
        crate::terminals_api::terminal_register, crate::terminals_api::terminals,
        crate::terminals_api::fleet,
        crate::terminals_api::activate, crate::terminals_api::parameters,
        crate::terminals_api::upload, crate::terminals_api::ecode_upload,
        crate::terminals_api::ecode_online,
        crate::terminals_api::deny_list,
        crate::clearing_api::close, crate::clearing_api::report,
        crate::clearing_api::settlement, crate::clearing_api::import_statement,
        crate::clearing_api::exceptions, crate::clearing_api::resolve,
        crate::fees_api::list, crate::fees_api::add,
        crate::ecode_api::debts, crate::ecode_api::settle_debts,
        crate::money_api::topup, crate::money_api::topup_get, crate::money_api::topups_resolve,
        crate::money_api::load_authorize, crate::money_api::load_get,
        crate::money_api::load_confirm, crate::money_api::load_resolve,
        crate::money_api::pay, crate::money_api::fee, crate::money_api::payment_get,
        crate::money_api::refund, crate::money_api::reverse,
        crate::exchange_api::key, crate::exchange_api::member_create,
        crate::exchange_api::members, crate::exchange_api::service_publish,
        crate::exchange_api::services, crate::exchange_api::grant_create,
        crate::exchange_api::grants, crate::exchange_api::grant_withdraw,
        crate::exchange_api::consent_give, crate::exchange_api::consent_revoke,
        crate::exchange_api::call, crate::exchange_api::data_access,
        crate::exchange_api::access_log, crate::exchange_api::stamp,
        crate::exchange_api::stamps_check,
        crate::identity_api::checkin,
        crate::exchange_oversight_api::search, crate::exchange_oversight_api::consent_stats,
        crate::exchange_oversight_api::citizen_consents,
        crate::feeds_api::push_changes, crate::feeds_api::reviews, crate::feeds_api::decide,
        crate::services_api::prefs_set, crate::services_api::prefs_get,
        crate::services_api::inbox, crate::services_api::outbox, crate::services_api::counts,
        crate::services_api::deliver, crate::services_api::biller_create,
        crate::services_api::billers, crate::services_api::bills_upload,
        crate::services_api::bills_file, crate::services_api::bill_get,
        crate::services_api::bill_pay, crate::services_api::payment_file,
        crate::services_api::agreement_sign, crate::services_api::agreement_cancel,
        crate::services_api::bills_of_citizen, crate::services_api::bill_run,
        crate::services_api::bill_runs,
        crate::citizen_api::sign_in, crate::citizen_api::sign_in_code,
        crate::oidc::app_session,
        crate::citizen_api::password_code, crate::citizen_api::password_set,
        crate::citizen_api::sign_out, crate::citizen_api::profile, crate::citizen_api::cards,
        crate::citizen_api::balances, crate::citizen_api::card_action,
        crate::citizen_api::transactions, crate::citizen_api::spending,
        crate::citizen_api::topup, crate::citizen_api::benefits, crate::citizen_api::bills,
        crate::citizen_api::bill_pay, crate::citizen_api::agreement_sign,
        crate::citizen_api::agreement_cancel, crate::citizen_api::messages,
        crate::citizen_api::consents, crate::citizen_api::consent_revoke,
        crate::citizen_api::data_access,
        crate::citizen_api::ecode_enrol, crate::citizen_api::ecode_certify,
        crate::citizen_api::load_authorize, crate::citizen_api::load_confirm,
        crate::points_api::rules, crate::points_api::rule_set, crate::points_api::items,
        crate::points_api::item_set, crate::points_api::projects,
        crate::points_api::project_set, crate::points_api::event,
        crate::points_api::of_citizen, crate::points_api::redeem, crate::points_api::donate,
        crate::points_api::expiry, crate::points_api::opt_in, crate::points_api::opt_out,
        crate::points_api::score, crate::points_api::history, crate::points_api::signal,
        crate::points_api::disputes, crate::points_api::dispute_open,
        crate::points_api::dispute_resolve,
        crate::citizen_points_api::points, crate::citizen_points_api::redeem,
        crate::citizen_points_api::donate, crate::citizen_points_api::credit,
        crate::citizen_points_api::history, crate::citizen_points_api::opt_in,
        crate::citizen_points_api::opt_out, crate::citizen_points_api::disputes,
        crate::citizen_points_api::dispute_open, crate::citizen_points_api::message_read,
    ),
    components(schemas(Problem, ProblemField)),
    modifiers(&BearerAuth, &ProblemResponses),
    tags(
        (name = "auth", description = "Sign-in and credentials"),
        (name = "residents", description = "Resident base database (一库)"),
        (name = "operators", description = "Operators and API tokens"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "cards", description = "Card applications, life cycle and deny-list (发行管理)"),
        (name = "ecode", description = "Electronic citizen card: phones, root keys, certificates, verification (电子市民卡)"),
        (name = "ledger", description = "The double-entry ledger: balances and the books' check (支付清算)"),
        (name = "clearing", description = "Payment clearing: offline purchase uploads, clearing windows (清分)"),
        (name = "production", description = "Production batches, service outlets and counter work (制卡与网点)"),
        (name = "money", description = "Money movements: top-ups, loads, payments, fees, refunds (支付清算)"),
        (name = "apps", description = "Application management and post-issuance scripts (应用管理)"),
        (name = "terminals", description = "Merchants, terminals, activation and signed terminal requests (网络终端)"),
        (name = "exchange", description = "Data sharing: members, service catalog, grants, consents, signed calls, the citizen's data tracker (数据共享)"),
        (name = "disbursements", description = "Subsidies and benefits paid by departments, four eyes (待遇发放)"),
        (name = "services", description = "Citizen services: notifications, bills and auto-debit (综合服务)"),
        (name = "citizen", description = "The citizen's own API for the phone app: sign-in with password and SMS code, and /api/v1/me/… (市民服务)"),
        (name = "points", description = "Points: earning rules, catalogue, charity projects, a citizen's points (积分)"),
        (name = "credit", description = "The opt-in, transparent credit score: factors, history, signals, disputes (信用服务)"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
