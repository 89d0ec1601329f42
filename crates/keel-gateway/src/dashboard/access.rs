//! Who may see the dashboard. When auth is required (or an admin key is set), every page
//! needs the admin key — `Authorization: Bearer <admin key>`, or the `keel_admin` cookie
//! that the login form sets — checked by the governor's constant-time admin check, the
//! same one `/admin/*` uses. Without auth the dashboard is open, like the quickstart.
//!
//! Forms that change something (the playground's) are also guarded against cross-site
//! posts: a browser's `Origin` must be this host, and when the cookie is what signs the
//! request in, the form must carry a token derived from it ([`form_token`]), which a
//! page on another site cannot know. (The cookie is `SameSite=Strict` too; this does not
//! rely on every browser honouring that.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::html::{esc, shell};
use crate::pipeline::auth;
use crate::state::AppState;

/// The cookie the login form sets.
pub const COOKIE_NAME: &str = "keel_admin";

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

/// The token a form must carry when the request signs in with the cookie: derived from
/// the cookie (so it changes with the key), never the key itself.
pub fn form_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers).map(|c| {
        Sha256::digest(format!("keel-form:{c}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// Whether a form post may change something: not from another site, and — when the
/// cookie is what signs it in — carrying the cookie's token.
pub fn check_form(app: &AppState, headers: &HeaderMap, token: Option<&str>) -> Result<(), String> {
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        // This host as the browser addressed it: Host, or the proxy's X-Forwarded-Host.
        let hosts: Vec<&str> = [HOST.as_str(), "x-forwarded-host"]
            .iter()
            .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .collect();
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        if !origin_host.is_some_and(|o| hosts.contains(&o)) {
            return Err(format!(
                "a form from {origin} cannot post here; use the dashboard's own page"
            ));
        }
    }
    if auth::admin(app, headers).is_ok() {
        return Ok(()); // signed in by a header (not sent by other sites), or no auth
    }
    match form_token(headers) {
        Some(want) if token == Some(want.as_str()) => Ok(()),
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
            Some(c) => app.governor.check_admin(Some(c)).map_err(|e| e.to_string()),
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
         (default <code>KEEL_ADMIN_KEY</code>). It is kept in an HttpOnly cookie on this browser.</p>"
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

/// `POST /ui/login`: check the key; on success set the cookie and go to the overview.
pub async fn login(State(app): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let key = f.key.trim();
    if let Err(e) = app.governor.check_admin(Some(key)) {
        return login_page(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    let value = format!("{COOKIE_NAME}={key}; Path=/; HttpOnly; SameSite=Strict");
    let Ok(value) = HeaderValue::from_str(&value) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "this admin key cannot be kept in a cookie; send it as Authorization: Bearer instead",
        );
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

/// `POST /ui/logout`: forget the cookie.
pub async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (
                SET_COOKIE,
                HeaderValue::from_static(
                    "keel_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
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
    fn the_admin_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie(&h), None);
        h.insert(COOKIE, "a=1; keel_admin=sekret ; b=2".parse().unwrap());
        assert_eq!(cookie(&h), Some("sekret"));
        h.insert(COOKIE, "keel_admin=".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn the_form_token_follows_the_cookie_and_never_shows_it() {
        let mut h = HeaderMap::new();
        assert_eq!(form_token(&h), None);
        h.insert(COOKIE, "keel_admin=sekret".parse().unwrap());
        let t = form_token(&h).unwrap();
        assert_eq!(t.len(), 64);
        assert!(!t.contains("sekret"));
        h.insert(COOKIE, "keel_admin=other".parse().unwrap());
        assert_ne!(form_token(&h).unwrap(), t);
    }
}
