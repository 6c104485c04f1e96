//! The token check in front of every route: a bearer header or the cookie `/login` sets.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const COOKIE_NAME: &str = "histoscreen_token";

/// Who may read the page. Tokens are compared as SHA-256 digests, in constant time, so neither
/// the comparison's duration nor a length mismatch says how much of a guess was right.
#[derive(Clone)]
pub struct Auth {
    digest: Option<[u8; 32]>,
    cookie: Option<HeaderValue>,
}

impl Auth {
    pub fn open() -> Self {
        Auth {
            digest: None,
            cookie: None,
        }
    }

    pub fn with_token(token: &[u8]) -> anyhow::Result<Self> {
        let text = std::str::from_utf8(token)?;
        // HttpOnly: page scripts never see it; Strict: other sites' pages cannot send it.
        let cookie = HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={text}; HttpOnly; SameSite=Strict; Path=/"
        ))?;
        Ok(Auth {
            digest: Some(Sha256::digest(token).into()),
            cookie: Some(cookie),
        })
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        match &self.digest {
            None => true,
            Some(d) => {
                let c: [u8; 32] = Sha256::digest(candidate).into();
                c.ct_eq(d).into()
            }
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        if self.digest.is_none() {
            return true;
        }
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "))
            .any(|t| self.matches(t.trim().as_bytes()));
        bearer
            || headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
                .any(|t| self.matches(t.as_bytes()))
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Bearer realm=\"histoscreen\"")],
        "401 unauthorized\n",
    )
        .into_response()
}

/// The `token` parameter, percent-decoded by axum's own query parser.
fn token_in_query(uri: &axum::http::Uri) -> Option<String> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .0
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Runs before routing: unauthenticated requests get 401 and nothing else; `/login?token=`
/// trades a right token for the cookie; only GET and HEAD reach the routes.
pub async fn guard(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/login" {
        let ok = token_in_query(req.uri()).is_some_and(|t| auth.matches(t.as_bytes()));
        if !ok || !matches!(*req.method(), Method::GET | Method::HEAD) {
            return unauthorized();
        }
        let mut resp = (StatusCode::SEE_OTHER, [(LOCATION, "/")]).into_response();
        if let Some(c) = &auth.cookie {
            resp.headers_mut().insert(SET_COOKIE, c.clone());
        }
        return resp;
    }
    if !auth.allows(req.headers()) {
        return unauthorized();
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "GET, HEAD")],
            "405 method not allowed: this page is read-only\n",
        )
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_cookie_are_accepted_only_with_the_right_token() {
        let a = Auth::with_token(b"0123456789abcdef").unwrap();
        assert!(a.allows(&headers(AUTHORIZATION, "Bearer 0123456789abcdef")));
        assert!(!a.allows(&headers(AUTHORIZATION, "Bearer 0123456789abcdeX")));
        assert!(!a.allows(&headers(AUTHORIZATION, "Bearer 0123456789abcdef0")));
        assert!(!a.allows(&headers(AUTHORIZATION, "Basic 0123456789abcdef")));
        assert!(a.allows(&headers(
            COOKIE,
            "other=1; histoscreen_token=0123456789abcdef"
        )));
        assert!(!a.allows(&headers(COOKIE, "histoscreen_token=nope")));
        assert!(!a.allows(&HeaderMap::new()));
        assert!(Auth::open().allows(&HeaderMap::new()));
    }

    #[test]
    fn login_query_is_percent_decoded() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(
            token_in_query(&uri("/login?x=1&token=ab%2Bcd")).as_deref(),
            Some("ab+cd")
        );
        assert_eq!(token_in_query(&uri("/login?x=1")), None);
        assert_eq!(token_in_query(&uri("/login")), None);
    }
}
