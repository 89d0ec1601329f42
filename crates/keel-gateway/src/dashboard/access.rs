//! Who may see the dashboard. When auth is required (or an admin key is set), every page
//! needs the admin key — `Authorization: Bearer <admin key>`, checked by the governor's
//! constant-time admin check (the same one `/admin/*` uses), or a session opened by the
//! login form ([`super::session`]: the browser keeps only a random session id in the
//! `keel_session` cookie, never the key). Without auth the dashboard is open, like the
//! quickstart.
//!
//! Forms that change something (the playground's, logout) are guarded against
//! cross-site posts: a browser's `Origin` must be this host, and when a session cookie
//! is what signs the request in, the form must carry the session's random token
//! ([`form_token`]), which a page on another site cannot know. (The cookie is
//! `SameSite=Strict` too; this does not rely on every browser honouring that.)
//! Failed logins are throttled per client address (429 with `Retry-After`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::html::{esc, shell};
use super::session::SESSION_TTL;
use crate::pipeline::auth;
use crate::state::AppState;

/// The cookie the login form sets: a session id.
pub const COOKIE_NAME: &str = "keel_session";

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The form token of the session the request's cookie names, when it is live.
pub fn form_token(app: &AppState, headers: &HeaderMap) -> Option<String> {
    let id = cookie(headers)?;
    app.sessions.token(id, app.governor.admin_digest())
}

/// Whether the request came from another site (its `Origin` is not this host).
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(ORIGIN)?;
    let origin = origin.to_str().unwrap_or("null");
    // This host as the browser addressed it: Host, or the proxy's X-Forwarded-Host.
    let hosts: Vec<&str> = [HOST.as_str(), "x-forwarded-host"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .collect();
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    if origin_host.is_some_and(|o| hosts.contains(&o)) {
        None
    } else {
        Some(format!(
            "a form from {origin} cannot post here; use the dashboard's own page"
        ))
    }
}

/// Whether a form post may change something: not from another site, and — when a
/// session cookie is what signs it in — carrying the session's token.
pub fn check_form(app: &AppState, headers: &HeaderMap, token: Option<&str>) -> Result<(), String> {
    if let Some(why) = cross_site(headers) {
        return Err(why);
    }
    if auth::admin(app, headers).is_ok() {
        return Ok(()); // signed in by a header (not sent by other sites), or no auth
    }
    match form_token(app, headers) {
        Some(want) if token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(want.as_bytes()))) => {
            Ok(())
        }
        Some(_) => {
            Err("the form's token is missing or stale: reload the page and submit again".into())
        }
        None => Err("sign in first".into()),
    }
}

/// Whether the request may see the dashboard; the refusal's message otherwise.
fn allowed(app: &AppState, headers: &HeaderMap) -> Result<(), String> {
    match auth::admin(app, headers) {
        Ok(()) => Ok(()),
        Err(e) => match cookie(headers) {
            Some(_) if form_token(app, headers).is_some() => Ok(()),
            Some(_) => Err("your session has ended (expired, signed out, or the admin key changed): sign in again".into()),
            None => Err(e.to_string()),
        },
    }
}

/// Middleware on every page: the admin check, or 401 with the login form.
pub async fn require(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match allowed(&app, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => login_page(StatusCode::UNAUTHORIZED, &why),
    }
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let note = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\">{}</p>", esc(message))
    };
    let body = format!(
        "{note}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
         <input type=\"text\" name=\"user\" value=\"admin\" autocomplete=\"username\" hidden>\
         <label>Admin key <input type=\"password\" name=\"key\" autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">The value of the env var named by <code>[auth] admin_key_env</code> \
         (default <code>KEEL_ADMIN_KEY</code>). Signing in keeps a session on this browser \
         (an HttpOnly cookie with a random id, for 12 hours, until you sign out).</p>"
    );
    (status, shell("Sign in", "", &body)).into_response()
}

/// `GET /ui/login`.
pub async fn form() -> Response {
    login_page(StatusCode::OK, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
}

/// Whether the browser reached us over TLS (directly, or through a proxy that says so).
fn over_tls(req: &Request) -> bool {
    req.uri().scheme_str() == Some("https")
        || req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
            })
}

/// `POST /ui/login`: check the key (unless this address is throttled); on success open
/// a session, set its cookie and go to the overview.
pub async fn login(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0u8, 0, 0, 0]), |c| c.0.ip());
    if let Some(wait) = app.sessions.blocked_for(ip) {
        return throttled(wait);
    }
    let secure = if over_tls(&req) { "; Secure" } else { "" };
    let Ok(Form(f)) = Form::<LoginForm>::from_request(req, &()).await else {
        return login_page(StatusCode::BAD_REQUEST, "the form needs a `key` field");
    };
    if let Err(e) = app.governor.check_admin(Some(f.key.trim())) {
        app.sessions.failed(ip);
        if let Some(wait) = app.sessions.blocked_for(ip) {
            return throttled(wait);
        }
        return login_page(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    app.sessions.succeeded(ip);
    let Some(admin) = app.governor.admin_digest() else {
        // No admin key (auth off): the dashboard is open, there is nothing to sign in to.
        return (
            StatusCode::SEE_OTHER,
            [(LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response();
    };
    let id = match app.sessions.open(admin) {
        Ok((id, _)) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot draw a random session id");
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot open a session now; try again",
            );
        }
    };
    let value = format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let Ok(value) = HeaderValue::from_str(&value) else {
        return login_page(StatusCode::INTERNAL_SERVER_ERROR, "cannot set the cookie");
    };
    (
        StatusCode::SEE_OTHER,
        [
            (SET_COOKIE, value),
            (LOCATION, HeaderValue::from_static("/")),
        ],
    )
        .into_response()
}

fn throttled(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut resp = login_page(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed sign-ins from this address; try again in {secs} s"),
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// `GET /ui/logout`: the sign-out button (a form carrying the session's token).
pub async fn logout_form(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let body = match form_token(&app, &headers) {
        Some(token) => format!(
            "<form method=\"post\" action=\"/ui/logout\" class=\"login\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(&token)
        ),
        None => "<p class=\"hint\">No session on this browser (the dashboard is open, or you \
                 sign in with an Authorization header): there is nothing to sign out of.</p>"
            .to_string(),
    };
    shell("Sign out", "", &body).into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    token: Option<String>,
}

/// `POST /ui/logout`: end the session (its token required) and forget the cookie.
pub async fn logout(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if let Some(id) = cookie(&headers) {
        if form_token(&app, &headers).is_some() {
            if let Err(why) = check_form(&app, &headers, f.token.as_deref()) {
                return super::html::PageError::Forbidden(why).into_response();
            }
        }
        app.sessions.revoke(id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                SET_COOKIE,
                HeaderValue::from_static(
                    "keel_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                ),
            ),
            (LOCATION, HeaderValue::from_static("/ui/login")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie(&h), None);
        h.insert(COOKIE, "a=1; keel_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h), Some("abc"));
        h.insert(COOKIE, "keel_session=".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }
}
