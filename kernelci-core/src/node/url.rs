//! URL checks for artifacts and `data` URLs.
//!
//! pydantic validates URLs with the WHATWG URL standard (through the same Rust `url`
//! crate we use), so the normalised forms agree with the reference: scheme and host
//! lower-cased, `/` appended to an empty path, IDNA and percent-encoding applied.

/// Why a string is not an acceptable URL: pydantic's error type and message.
pub(crate) type UrlError = (&'static str, String);

/// Parses any absolute URL with a scheme (`https://`, `git://`...), returning its
/// normalised form.
pub(crate) fn any_url(s: &str) -> Result<String, UrlError> {
    match ::url::Url::parse(s) {
        Ok(u) => Ok(u.to_string()),
        Err(e) => Err((
            "url_parsing",
            format!("Input should be a valid URL, {}", describe(e)),
        )),
    }
}

/// Parses an absolute `http` or `https` URL with a host, returning its normalised form.
pub(crate) fn http_url(s: &str) -> Result<String, UrlError> {
    let u = ::url::Url::parse(s).map_err(|e| {
        (
            "url_parsing",
            format!("Input should be a valid URL, {}", describe(e)),
        )
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err((
            "url_scheme",
            "URL scheme should be 'http' or 'https'".to_owned(),
        ));
    }
    Ok(u.to_string())
}

fn describe(e: ::url::ParseError) -> &'static str {
    use ::url::ParseError::*;
    match e {
        EmptyHost => "empty host",
        IdnaError => "invalid international domain name",
        InvalidPort => "invalid port number",
        InvalidIpv4Address => "invalid IPv4 address",
        InvalidIpv6Address => "invalid IPv6 address",
        InvalidDomainCharacter => "invalid domain character",
        RelativeUrlWithoutBase => "relative URL without a base",
        RelativeUrlWithCannotBeABaseBase => "relative URL with a cannot-be-a-base base",
        SetHostOnCannotBeABaseUrl => "a cannot-be-a-base URL doesn't have a host to set",
        Overflow => "URLs more than 4 GB are not supported",
        _ => "invalid URL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_are_normalised_like_pydantic() {
        assert_eq!(
            http_url("http://example.com").unwrap(),
            "http://example.com/"
        );
        assert_eq!(
            http_url("HTTPS://Example.COM/a b").unwrap(),
            "https://example.com/a%20b"
        );
        assert_eq!(http_url("ftp://example.com/x").unwrap_err().0, "url_scheme");
        assert_eq!(http_url("example.com/x").unwrap_err().0, "url_parsing");
        assert_eq!(http_url("http://").unwrap_err().0, "url_parsing");
    }

    #[test]
    fn any_scheme_is_accepted_for_repository_urls() {
        assert!(any_url("git://git.kernel.org/pub/scm/linux.git").is_ok());
        assert!(any_url("https://git.kernel.org/").is_ok());
        assert_eq!(
            any_url("git@github.com:torvalds/linux").unwrap_err().1,
            "Input should be a valid URL, relative URL without a base"
        );
    }
}
