//! Who may see the dashboard. When auth is required (or an admin key is set), every page
//! needs the admin key — `Authorization: Bearer <admin key>`, or the `keel_admin` cookie
//! that the login form sets — checked by the governor's constant-time admin check, the
//! same one `/admin/*` uses. Without auth the dashboard is open, like the quickstart.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

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
}
