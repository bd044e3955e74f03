//! Authentication and the role table. Every route of the server is listed in [`PERMISSIONS`]
//! with the roles it admits; one middleware looks the matched route up and refuses what the
//! table does not allow. A route missing from the table is refused (fail closed), and a test
//! walks the whole table for every role.

use crate::AppState;
use crate::error::problem_response;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use platform::{Caller, PlatformError};
use std::net::SocketAddr;
use store::Role;

pub const SESSION_COOKIE: &str = "citycard_session";
/// The citizen portal's session cookie (apart from the console's).
pub const CITIZEN_COOKIE: &str = "citycard_citizen";

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone, signed in or not (health, metrics, sign-in, the OpenAPI document).
    Public,
    /// Signed-in operators with one of these roles.
    Roles(&'static [Role]),
    /// Activated terminals: the handler checks the request's SM2 signature (operators'
    /// tokens do not open these routes).
    Terminal,
    /// Members of the data-sharing exchange: the handler checks the call's SM2 signature
    /// (operators' tokens do not open these routes).
    Member,
    /// A signed-in citizen: the portal's session cookie under `/portal`, an app bearer token
    /// under `/api` (operators' credentials do not open these routes, nor citizens' theirs).
    Citizen,
}

pub struct Permission {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

use Role::{
    Administrator as ADM, Auditor as AUD, ClearingOfficer as CLR, CounterClerk as CLK,
    DepartmentOfficer as DEP,
};

const ALL: &[Role] = &[ADM, CLK, CLR, DEP, AUD];
const RESIDENT_READERS: &[Role] = &[ADM, CLK, DEP, AUD];
const FEEDERS: &[Role] = &[ADM, DEP];
const ADMINS: &[Role] = &[ADM];
const OVERSIGHT: &[Role] = &[ADM, AUD];
const FEED_READERS: &[Role] = &[ADM, DEP, AUD];
const CARD_WORKERS: &[Role] = &[ADM, CLK];
const CARD_READERS: &[Role] = &[ADM, CLK, AUD];
const DENY_READERS: &[Role] = &[ADM, CLK, CLR, AUD];
const LEDGER_CHECKERS: &[Role] = &[ADM, CLR, AUD];
const CLEARING: &[Role] = &[ADM, CLR];
const OUTLET_READERS: &[Role] = &[ADM, CLK, AUD];
const COUNTER: &[Role] = &[CLK];
const APP_READERS: &[Role] = &[ADM, CLK, DEP, AUD];
const APP_MANAGERS: &[Role] = &[ADM, DEP];
const APP_WORKERS: &[Role] = &[ADM, CLK, DEP];
/// A card's contact (chip updates of the card company's TRANSIT application): the counters,
/// kiosks and top-up terminals, run by clerks, and administrators.
const CHIP_CONTACTS: &[Role] = &[ADM, CLK];
const DISBURSERS: &[Role] = &[ADM, DEP];
const MERCHANT_READERS: &[Role] = &[ADM, CLR, AUD];
const DISBURSEMENT_READERS: &[Role] = &[ADM, CLR, DEP, AUD];
const FUNDING: &[Role] = &[ADM, CLR];
const NOTICE_READERS: &[Role] = &[ADM, CLK, AUD];
const BILL_READERS: &[Role] = &[ADM, CLK, CLR, AUD];
const BILL_PAYERS: &[Role] = &[ADM, CLK, CLR];
const RECEIPT_READERS: &[Role] = &[ADM, CLK, CLR, AUD];
/// Top-ups and loads: counter work.
const COUNTER_MONEY: &[Role] = &[ADM, CLK];
/// Payments, refunds, reversals: the clearing officer until terminals authenticate (issue 6).
const PAYMENTS: &[Role] = &[ADM, CLR];
const FEES: &[Role] = &[ADM, CLR, CLK];
const MONEY_READERS: &[Role] = &[ADM, CLK, CLR, AUD];
const SWEEPERS: &[Role] = &[ADM, CLR];
const EXCHANGE_READERS: &[Role] = &[ADM, DEP, AUD];
/// Consents are recorded for the citizen at a counter until the portal; the tracker is read
/// for them there.
const FOR_CITIZEN: &[Role] = &[ADM, CLK];
const TRACKER_READERS: &[Role] = &[ADM, CLK, AUD];
/// Points and credit: rules kept by the administrator, uses and signals reported through the
/// clearing officer (civil affairs reports volunteer hours), citizens served at the counter.
const POINTS_READERS: &[Role] = &[ADM, CLK, CLR, AUD];
const POINTS_REPORTERS: &[Role] = &[ADM, CLR, DEP];
const CREDIT_READERS: &[Role] = &[ADM, CLK, AUD];

macro_rules! perm {
    ($m:ident $p:literal $a:expr) => {
        Permission {
            method: Method::$m,
            path: $p,
            access: $a,
        }
    };
}

/// The whole table: method, route pattern (as axum matches it), who may call.
pub static PERMISSIONS: &[Permission] = &[
    perm!(GET "/healthz" Access::Public),
    perm!(GET "/readyz" Access::Public),
    perm!(GET "/metrics" Access::Public),
    perm!(GET "/api/openapi.json" Access::Public),
    perm!(POST "/api/v1/sessions" Access::Public),
    perm!(DELETE "/api/v1/sessions/current" Access::Roles(ALL)),
    perm!(GET "/api/v1/me" Access::Roles(ALL)),
    perm!(GET "/api/v1/residents" Access::Roles(RESIDENT_READERS)),
    perm!(GET "/api/v1/residents/{id_number}" Access::Roles(RESIDENT_READERS)),
    perm!(GET "/api/v1/residents/{id_number}/history" Access::Roles(RESIDENT_READERS)),
    perm!(POST "/api/v1/residents/import" Access::Roles(FEEDERS)),
    perm!(POST "/api/v1/residents/changes" Access::Roles(FEEDERS)),
    // A department officer decides only the fields its department is the authority for
    // (checked in platform).
    perm!(GET "/api/v1/residents/reviews" Access::Roles(FEEDERS)),
    perm!(POST "/api/v1/residents/reviews/{id}/decision" Access::Roles(FEEDERS)),
    perm!(GET "/api/v1/feeds" Access::Roles(FEED_READERS)),
    perm!(GET "/api/v1/operators" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/operators" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/tokens" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/audit" Access::Roles(OVERSIGHT)),
    perm!(GET "/api/v1/audit/verify" Access::Roles(OVERSIGHT)),
    perm!(GET "/api/v1/cards" Access::Roles(CARD_READERS)),
    perm!(POST "/api/v1/cards" Access::Roles(CARD_WORKERS)),
    perm!(GET "/api/v1/cards/{number}" Access::Roles(CARD_READERS)),
    perm!(POST "/api/v1/cards/{number}/actions" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/enrolments" Access::Roles(CARD_WORKERS)),
    perm!(GET "/api/v1/residents/{id_number}/enrolments" Access::Roles(CARD_READERS)),
    perm!(GET "/api/v1/cards/{number}/events" Access::Roles(CARD_READERS)),
    perm!(GET "/api/v1/cards/{number}/balances" Access::Roles(CARD_READERS)),
    perm!(GET "/api/v1/ledger/check" Access::Roles(LEDGER_CHECKERS)),
    perm!(POST "/api/v1/purchases" Access::Roles(CLEARING)),
    perm!(GET "/api/v1/denylist/changes" Access::Roles(DENY_READERS)),
    perm!(GET "/api/v1/denylist" Access::Roles(DENY_READERS)),
    perm!(GET "/api/v1/denylist/delta" Access::Roles(DENY_READERS)),
    perm!(GET "/api/v1/denylist/key" Access::Roles(DENY_READERS)),
    perm!(GET "/api/v1/cards/{number}/devices" Access::Roles(CARD_READERS)),
    perm!(POST "/api/v1/cards/{number}/devices" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/ecode/devices/{id}/revoke" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/ecode/certificates" Access::Roles(CARD_WORKERS)),
    perm!(GET "/api/v1/ecode/roots" Access::Roles(DENY_READERS)),
    perm!(POST "/api/v1/ecode/roots" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/ecode/roots/{key_id}/rotate" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/ecode/roots/{key_id}/withdraw" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/ecode/verify" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/ecode/identity" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/ecode/identity/uses" Access::Roles(CARD_READERS)),
    perm!(GET "/api/v1/outlets" Access::Roles(OUTLET_READERS)),
    perm!(POST "/api/v1/outlets" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/outlets/{code}/clerks" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/outlets/{code}/stock" Access::Roles(OUTLET_READERS)),
    perm!(GET "/api/v1/outlets/{code}/journal" Access::Roles(OUTLET_READERS)),
    perm!(POST "/api/v1/outlets/{code}/closing" Access::Roles(COUNTER)),
    perm!(POST "/api/v1/outlets/{code}/hand-over" Access::Roles(COUNTER)),
    perm!(POST "/api/v1/outlets/{code}/lost-reports" Access::Roles(COUNTER)),
    perm!(POST "/api/v1/outlets/{code}/replacements" Access::Roles(COUNTER)),
    perm!(GET "/api/v1/batches" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/batches" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/batches/{batch}" Access::Roles(OVERSIGHT)),
    perm!(GET "/api/v1/batches/{batch}/personalization" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/batches/{batch}/results" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/batches/{batch}/distribution" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/apps" Access::Roles(APP_READERS)),
    perm!(POST "/api/v1/apps" Access::Roles(APP_MANAGERS)),
    perm!(POST "/api/v1/apps/{code}/functions" Access::Roles(APP_MANAGERS)),
    perm!(GET "/api/v1/cards/{number}/functions" Access::Roles(APP_READERS)),
    perm!(POST "/api/v1/cards/{number}/functions/{function}/script" Access::Roles(APP_WORKERS)),
    perm!(POST "/api/v1/cards/{number}/functions/{function}/confirm" Access::Roles(APP_WORKERS)),
    perm!(POST "/api/v1/cards/{number}/contact" Access::Roles(CHIP_CONTACTS)),
    perm!(POST "/api/v1/cards/{number}/contact/confirm" Access::Roles(CHIP_CONTACTS)),
    perm!(GET "/api/v1/cards/{number}/chip-updates" Access::Roles(CARD_READERS)),
    perm!(GET "/api/v1/disbursements" Access::Roles(DISBURSEMENT_READERS)),
    perm!(POST "/api/v1/disbursements" Access::Roles(DISBURSERS)),
    perm!(GET "/api/v1/disbursements/{id}" Access::Roles(DISBURSEMENT_READERS)),
    perm!(GET "/api/v1/disbursements/{id}/lines" Access::Roles(DISBURSEMENT_READERS)),
    perm!(POST "/api/v1/disbursements/{id}/decision" Access::Roles(DISBURSERS)),
    perm!(POST "/api/v1/disbursements/{id}/payment" Access::Roles(DISBURSERS)),
    perm!(POST "/api/v1/departments/{code}/funding" Access::Roles(FUNDING)),
    perm!(POST "/api/v1/disbursements/received" Access::Roles(RECEIPT_READERS)),
    // A department officer's way in is its disbursement approvals (the page sends it there).
    perm!(GET "/console/clearing" Access::Roles(DISBURSEMENT_READERS)),
    perm!(GET "/console/clearing/windows/{window}" Access::Roles(LEDGER_CHECKERS)),
    perm!(POST "/console/clearing/windows/{window}/close" Access::Roles(CLEARING)),
    perm!(POST "/console/clearing/windows/{window}/settlement" Access::Roles(CLEARING)),
    perm!(GET "/console/clearing/exceptions" Access::Roles(CLEARING)),
    perm!(POST "/console/clearing/exceptions/{id}/resolution" Access::Roles(CLEARING)),
    perm!(GET "/console/clearing/disbursements" Access::Roles(DISBURSEMENT_READERS)),
    perm!(POST "/console/clearing/disbursements/{id}" Access::Roles(DISBURSERS)),
    perm!(GET "/console/clearing/fees" Access::Roles(LEDGER_CHECKERS)),
    perm!(POST "/console/clearing/fees" Access::Roles(CLEARING)),
    perm!(GET "/console/ecode" Access::Roles(CARD_READERS)),
    perm!(GET "/console/exchange" Access::Roles(EXCHANGE_READERS)),
    perm!(GET "/console/exchange/grants" Access::Roles(OVERSIGHT)),
    perm!(GET "/console/exchange/consents" Access::Roles(OVERSIGHT)),
    perm!(GET "/console/exchange/access" Access::Roles(OVERSIGHT)),
    perm!(POST "/console/exchange/access" Access::Roles(OVERSIGHT)),
    perm!(GET "/console/terminals" Access::Roles(MERCHANT_READERS)),
    perm!(GET "/api/v1/merchants" Access::Roles(MERCHANT_READERS)),
    perm!(POST "/api/v1/merchants" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/terminals" Access::Roles(MERCHANT_READERS)),
    perm!(GET "/api/v1/terminals/fleet" Access::Roles(MERCHANT_READERS)),
    perm!(POST "/api/v1/terminals" Access::Roles(ADMINS)),
    // Terminals authenticate by their own signature (checked in the handler), not a token.
    perm!(POST "/api/v1/terminal/activation" Access::Public),
    perm!(GET "/api/v1/terminal/parameters" Access::Terminal),
    perm!(GET "/api/v1/terminal/denylist" Access::Terminal),
    perm!(POST "/api/v1/terminal/uploads" Access::Terminal),
    perm!(POST "/api/v1/terminal/ecode-payments" Access::Terminal),
    perm!(POST "/api/v1/terminal/ecode-payments/online" Access::Terminal),
    perm!(GET "/api/v1/cards/{number}/ecode-debts" Access::Roles(DENY_READERS)),
    perm!(POST "/api/v1/cards/{number}/ecode-debts/settlement" Access::Roles(FEES)),
    perm!(POST "/api/v1/residents/{id_number}/topups" Access::Roles(COUNTER_MONEY)),
    perm!(GET "/api/v1/topups/{order_id}" Access::Roles(MONEY_READERS)),
    perm!(POST "/api/v1/topups/resolve" Access::Roles(SWEEPERS)),
    perm!(POST "/api/v1/cards/{number}/loads" Access::Roles(COUNTER_MONEY)),
    perm!(GET "/api/v1/loads/{id}" Access::Roles(MONEY_READERS)),
    perm!(POST "/api/v1/loads/{id}/confirm" Access::Roles(COUNTER_MONEY)),
    perm!(POST "/api/v1/loads/{id}/resolve" Access::Roles(SWEEPERS)),
    perm!(POST "/api/v1/payments" Access::Roles(PAYMENTS)),
    perm!(GET "/api/v1/payments/{id}" Access::Roles(MONEY_READERS)),
    perm!(POST "/api/v1/payments/{id}/refunds" Access::Roles(PAYMENTS)),
    perm!(POST "/api/v1/payments/{id}/reversal" Access::Roles(PAYMENTS)),
    perm!(POST "/api/v1/fees" Access::Roles(FEES)),
    perm!(GET "/api/v1/clearing/windows/{window}" Access::Roles(LEDGER_CHECKERS)),
    perm!(POST "/api/v1/clearing/windows/{window}/close" Access::Roles(FUNDING)),
    perm!(GET "/api/v1/clearing/windows/{window}/settlement" Access::Roles(FUNDING)),
    perm!(POST "/api/v1/clearing/statements" Access::Roles(FUNDING)),
    perm!(GET "/api/v1/clearing/exceptions" Access::Roles(FUNDING)),
    perm!(POST "/api/v1/clearing/exceptions/{id}/resolution" Access::Roles(FUNDING)),
    perm!(GET "/api/v1/clearing/fees" Access::Roles(LEDGER_CHECKERS)),
    perm!(POST "/api/v1/clearing/fees" Access::Roles(CLEARING)),
    perm!(GET "/api/v1/exchange/key" Access::Public),
    perm!(GET "/api/v1/exchange/members" Access::Roles(EXCHANGE_READERS)),
    perm!(POST "/api/v1/exchange/members" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/exchange/services" Access::Roles(EXCHANGE_READERS)),
    perm!(POST "/api/v1/exchange/services" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/exchange/grants" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/exchange/grants" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/exchange/grants/{id}/withdraw" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/exchange/consents" Access::Roles(FOR_CITIZEN)),
    perm!(POST "/api/v1/exchange/consents/{id}/revoke" Access::Roles(FOR_CITIZEN)),
    // Consumers authenticate by their member signature (checked in the handler).
    perm!(POST "/api/v1/exchange/call" Access::Member),
    perm!(POST "/api/v1/exchange/checkin" Access::Member),
    perm!(POST "/api/v1/exchange/access/search" Access::Roles(OVERSIGHT)),
    perm!(GET "/api/v1/exchange/consents/stats" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/residents/consents" Access::Roles(TRACKER_READERS)),
    perm!(GET "/api/v1/exchange/access" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/exchange/stamps" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/exchange/stamps/check" Access::Roles(OVERSIGHT)),
    perm!(POST "/api/v1/residents/data-access" Access::Roles(TRACKER_READERS)),
    perm!(GET "/api/v1/notifications" Access::Roles(NOTICE_READERS)),
    perm!(GET "/api/v1/notifications/counts" Access::Roles(NOTICE_READERS)),
    perm!(POST "/api/v1/notifications/delivery" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/notifications/preferences" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/notifications/preferences/query" Access::Roles(NOTICE_READERS)),
    perm!(POST "/api/v1/notifications/inbox" Access::Roles(NOTICE_READERS)),
    perm!(GET "/api/v1/billers" Access::Roles(BILL_READERS)),
    perm!(POST "/api/v1/billers" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/billers/{code}/bills" Access::Roles(CLEARING)),
    perm!(POST "/api/v1/billers/{code}/bills/file" Access::Roles(CLEARING)),
    perm!(GET "/api/v1/billers/{code}/bills/{number}" Access::Roles(BILL_READERS)),
    perm!(POST "/api/v1/billers/{code}/bills/{number}/payment" Access::Roles(BILL_PAYERS)),
    perm!(GET "/api/v1/billers/{code}/payment-file" Access::Roles(CLEARING)),
    perm!(POST "/api/v1/agreements" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/agreements/{id}/cancellation" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/bills/of-citizen" Access::Roles(BILL_READERS)),
    perm!(GET "/api/v1/bill-runs" Access::Roles(BILL_READERS)),
    perm!(POST "/api/v1/bill-runs" Access::Roles(CLEARING)),
    perm!(GET "/console/services" Access::Roles(BILL_READERS)),
    // Citizens (issue 9): sign-in is public; the rest needs a citizen's session.
    perm!(POST "/api/v1/citizen/sessions" Access::Public),
    perm!(POST "/api/v1/citizen/sessions/code" Access::Public),
    perm!(POST "/api/v1/citizen/sessions/oidc" Access::Public),
    perm!(POST "/api/v1/citizen/password-codes" Access::Public),
    perm!(POST "/api/v1/citizen/password" Access::Public),
    perm!(DELETE "/api/v1/me/session" Access::Citizen),
    perm!(GET "/api/v1/me/profile" Access::Citizen),
    perm!(GET "/api/v1/me/cards" Access::Citizen),
    perm!(GET "/api/v1/me/balances" Access::Citizen),
    perm!(POST "/api/v1/me/cards/{number}/actions" Access::Citizen),
    perm!(GET "/api/v1/me/transactions" Access::Citizen),
    perm!(GET "/api/v1/me/spending" Access::Citizen),
    perm!(POST "/api/v1/me/topups" Access::Citizen),
    perm!(GET "/api/v1/me/benefits" Access::Citizen),
    perm!(GET "/api/v1/me/bills" Access::Citizen),
    perm!(POST "/api/v1/me/bills/{biller}/{number}/payment" Access::Citizen),
    perm!(POST "/api/v1/me/agreements" Access::Citizen),
    perm!(POST "/api/v1/me/agreements/{id}/cancellation" Access::Citizen),
    perm!(GET "/api/v1/me/messages" Access::Citizen),
    perm!(GET "/api/v1/me/consents" Access::Citizen),
    perm!(POST "/api/v1/me/consents/{id}/revocation" Access::Citizen),
    perm!(GET "/api/v1/me/data-access" Access::Citizen),
    perm!(POST "/api/v1/me/cards/{number}/devices" Access::Citizen),
    perm!(POST "/api/v1/me/ecode/certificates" Access::Citizen),
    perm!(POST "/api/v1/me/cards/{number}/loads" Access::Citizen),
    perm!(POST "/api/v1/me/loads/{id}/confirm" Access::Citizen),
    perm!(GET "/api/v1/me/points" Access::Citizen),
    perm!(POST "/api/v1/me/points/redemptions" Access::Citizen),
    perm!(POST "/api/v1/me/points/donations" Access::Citizen),
    perm!(GET "/api/v1/me/credit" Access::Citizen),
    perm!(GET "/api/v1/me/credit/history" Access::Citizen),
    perm!(POST "/api/v1/me/credit/opt-in" Access::Citizen),
    perm!(POST "/api/v1/me/credit/opt-out" Access::Citizen),
    perm!(GET "/api/v1/me/credit/disputes" Access::Citizen),
    perm!(POST "/api/v1/me/credit/disputes" Access::Citizen),
    perm!(POST "/api/v1/me/messages/{id}/read" Access::Citizen),
    perm!(GET "/portal/login" Access::Public),
    perm!(POST "/portal/login" Access::Public),
    perm!(POST "/portal/login/code" Access::Public),
    perm!(GET "/portal/login/oidc" Access::Public),
    perm!(GET "/portal/login/oidc/callback" Access::Public),
    perm!(GET "/portal/password" Access::Public),
    perm!(POST "/portal/password" Access::Public),
    perm!(POST "/portal/password/set" Access::Public),
    perm!(GET "/portal/assets/portal.css" Access::Public),
    perm!(POST "/portal/logout" Access::Citizen),
    perm!(GET "/portal/" Access::Citizen),
    perm!(POST "/portal/cards/{number}" Access::Citizen),
    perm!(GET "/portal/transactions" Access::Citizen),
    perm!(GET "/portal/topup" Access::Citizen),
    perm!(POST "/portal/topup" Access::Citizen),
    perm!(GET "/portal/ecode" Access::Citizen),
    perm!(POST "/portal/ecode" Access::Citizen),
    perm!(GET "/portal/benefits" Access::Citizen),
    perm!(GET "/portal/bills" Access::Citizen),
    perm!(POST "/portal/bills" Access::Citizen),
    perm!(GET "/portal/messages" Access::Citizen),
    perm!(GET "/portal/privacy" Access::Citizen),
    perm!(GET "/portal/points" Access::Citizen),
    perm!(POST "/portal/points/redeem" Access::Citizen),
    perm!(POST "/portal/points/donate" Access::Citizen),
    perm!(GET "/portal/credit" Access::Citizen),
    perm!(POST "/portal/credit/opt-in" Access::Citizen),
    perm!(POST "/portal/credit/opt-out" Access::Citizen),
    perm!(POST "/portal/credit/disputes" Access::Citizen),
    perm!(POST "/portal/messages" Access::Citizen),
    perm!(GET "/api/v1/points/rules" Access::Roles(POINTS_READERS)),
    perm!(POST "/api/v1/points/rules" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/points/catalogue" Access::Roles(POINTS_READERS)),
    perm!(POST "/api/v1/points/catalogue" Access::Roles(ADMINS)),
    perm!(GET "/api/v1/points/projects" Access::Roles(POINTS_READERS)),
    perm!(POST "/api/v1/points/projects" Access::Roles(ADMINS)),
    perm!(POST "/api/v1/points/events" Access::Roles(POINTS_REPORTERS)),
    perm!(POST "/api/v1/points/of-citizen" Access::Roles(POINTS_READERS)),
    perm!(POST "/api/v1/points/redemptions" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/points/donations" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/points/expiry" Access::Roles(CLEARING)),
    perm!(POST "/api/v1/credit/opt-in" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/credit/opt-out" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/credit/score" Access::Roles(CREDIT_READERS)),
    perm!(POST "/api/v1/credit/history" Access::Roles(CREDIT_READERS)),
    perm!(POST "/api/v1/credit/signals" Access::Roles(CLEARING)),
    perm!(GET "/api/v1/credit/disputes" Access::Roles(POINTS_READERS)),
    perm!(POST "/api/v1/credit/disputes" Access::Roles(CARD_WORKERS)),
    perm!(POST "/api/v1/credit/disputes/{id}/resolution" Access::Roles(CLEARING)),
    perm!(GET "/console/points" Access::Roles(POINTS_READERS)),
    perm!(GET "/console/credit" Access::Roles(POINTS_READERS)),
    // The console's forms: the same roles as the API they stand for.
    perm!(POST "/console/points/rules/{kind}" Access::Roles(ADMINS)),
    perm!(POST "/console/points/catalogue" Access::Roles(ADMINS)),
    perm!(POST "/console/points/catalogue/{code}/withdrawal" Access::Roles(ADMINS)),
    perm!(POST "/console/points/projects" Access::Roles(ADMINS)),
    perm!(POST "/console/credit/disputes/{id}/resolution" Access::Roles(CLEARING)),
    perm!(POST "/portal/privacy" Access::Citizen),
    perm!(GET "/console/login" Access::Public),
    perm!(POST "/console/login" Access::Public),
    perm!(GET "/console/assets/console.css" Access::Public),
    perm!(POST "/console/logout" Access::Roles(ALL)),
    perm!(GET "/console/" Access::Roles(ALL)),
    perm!(GET "/console/residents" Access::Roles(RESIDENT_READERS)),
    perm!(POST "/console/residents" Access::Roles(RESIDENT_READERS)),
    perm!(GET "/console/audit" Access::Roles(OVERSIGHT)),
    perm!(GET "/console/cards" Access::Roles(CARD_READERS)),
    perm!(GET "/console/cards/batches" Access::Roles(OVERSIGHT)),
    perm!(GET "/console/cards/outlets" Access::Roles(OUTLET_READERS)),
    perm!(GET "/console/cards/apps" Access::Roles(APP_READERS)),
    perm!(GET "/console/cards/{number}" Access::Roles(CARD_READERS)),
];

pub fn lookup(method: &Method, path: &str) -> Option<&'static Permission> {
    PERMISSIONS
        .iter()
        .find(|p| p.method == *method && p.path == path)
}

fn bearer(req: &Request) -> Option<String> {
    let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    h.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

pub fn cookie(req_headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The presented credential: the bearer token, or the console session cookie.
pub fn presented_token(req: &Request) -> Option<String> {
    bearer(req).or_else(|| cookie(req.headers(), SESSION_COOKIE))
}

pub fn origin_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The token a request was authenticated with, for sign-out.
#[derive(Clone)]
pub struct PresentedToken(pub String);

pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let console = req.uri().path().starts_with("/console");
    let Some(path) = path else {
        // No route matched: let the router answer 404/405.
        return next.run(req).await;
    };
    let Some(perm) = lookup(req.method(), &path) else {
        tracing::error!(%path, method = %req.method(), "route missing from the permission table");
        return problem_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route is not open to anyone".into(),
            vec![],
        );
    };
    let roles = match perm.access {
        Access::Public | Access::Terminal | Access::Member => return next.run(req).await,
        Access::Citizen => return citizen(state, req, next).await,
        Access::Roles(r) => r,
    };
    let origin = origin_of(&req);
    let token = presented_token(&req);
    let caller = match &token {
        None => Err(PlatformError::Unauthenticated),
        Some(t) => state
            .platform
            .authenticate(t, &origin)
            .await
            .map(|(c, _)| c),
    };
    let caller: Caller = match caller {
        Ok(c) => c,
        Err(PlatformError::Unauthenticated) if console => {
            return Redirect::to("/console/login").into_response();
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    if !roles.contains(&caller.role) {
        return problem_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the {} role may not {} {}",
                caller.role.as_str(),
                perm.method,
                perm.path
            ),
            vec![],
        );
    }
    if let Some(t) = token {
        req.extensions_mut().insert(PresentedToken(t));
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The token a citizen's request was authenticated with, for sign-out.
#[derive(Clone)]
pub struct CitizenToken(pub String);

/// Opens a citizen route: the portal takes only its session cookie, the app API only a bearer
/// token of an app session.
async fn citizen(state: AppState, mut req: Request, next: Next) -> Response {
    let portal = req.uri().path().starts_with("/portal");
    let (token, kind) = if portal {
        (cookie(req.headers(), CITIZEN_COOKIE), "portal")
    } else {
        (bearer(&req), "app")
    };
    let origin = origin_of(&req);
    let found = match &token {
        None => Err(PlatformError::Unauthenticated),
        Some(t) => state.platform.citizen_authenticate(t, kind, &origin).await,
    };
    match found {
        Ok(c) => {
            if let Some(t) = token {
                req.extensions_mut().insert(CitizenToken(t));
            }
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        Err(PlatformError::Unauthenticated) if portal => {
            Redirect::to("/portal/login").into_response()
        }
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}
