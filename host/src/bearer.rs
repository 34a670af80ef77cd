//! Bearer tokens: read from a file, and checked in a request's `Authorization` header in
//! constant time (the `http` source's `bearer_token`, the admin endpoint's
//! `admin_token_file`, the webhdfs delegation token file).

use axum::http::{HeaderMap, header};
use std::path::Path;

/// A token file's text without its trailing line end; an error (for the config to name
/// with its key) when it cannot be read, is empty or is not UTF-8.
pub fn read_file(path: &Path) -> Result<String, String> {
    crate::files::read_secret(path)
        .and_then(|t| String::from_utf8(t).map_err(|_| "is not UTF-8 text".into()))
}

/// Whether `headers` carry `Authorization: Bearer <token>`: compared in time that does
/// not depend on where the given token first differs.
pub fn matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(matches(&with("Bearer s3cret"), "s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3cret",
            "s3cret",
            "Basic s3cret",
        ] {
            assert!(!matches(&with(wrong), "s3cret"), "{wrong}");
        }
        assert!(!matches(&HeaderMap::new(), "s3cret"));
    }
}
