//! E-mail address checks (the reference's `EmailStr`).

/// Domain names reserved for special uses that cannot receive mail (the ones
/// pydantic's `EmailStr` refuses by default).
const SPECIAL_USE_DOMAINS: &[&str] = &["arpa", "invalid", "local", "localhost", "onion", "test"];

/// Checks an e-mail address the way the reference's `EmailStr` does (syntax only,
/// no DNS) and returns it normalised (the domain in lower case); `Err` carries the
/// reason, which the 422 answer shows.
///
/// Accepted: `local@domain` with a dot-atom local part (letters, digits,
/// ``!#$%&'*+-/=?^_`{|}~``, non-ASCII letters, dots not first, last or doubled; at
/// most 64 bytes) and a domain of at least two dot-separated labels (letters,
/// digits, hyphens not first or last, at most 63 bytes each, 253 in all), whose last
/// label is not all digits nor a special-use name (`localhost`, `test`, ...).
/// Quoted local parts and address literals (`user@[127.0.0.1]`) are refused, as
/// they are by default in the reference.
pub fn normalize_address(input: &str) -> Result<String, String> {
    match input.matches('@').count() {
        0 => return Err("An email address must have an @-sign.".to_owned()),
        1 => {}
        _ => {
            return Err(
                "The email address is not valid. It must have exactly one @-sign.".to_owned(),
            )
        }
    }
    let (local, domain) = input.split_once('@').unwrap_or((input, ""));
    if local.is_empty() {
        return Err("There must be something before the @-sign.".to_owned());
    }
    if domain.is_empty() {
        return Err("There must be something after the @-sign.".to_owned());
    }
    if input.len() > 254 {
        return Err("The email address is too long.".to_owned());
    }
    if local.len() > 64 {
        return Err("The email address is too long before the @-sign.".to_owned());
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if local.starts_with('.') {
        return Err("An email address cannot start with a period.".to_owned());
    }
    if local.ends_with('.') {
        return Err(
            "An email address cannot have a period immediately before the @-sign.".to_owned(),
        );
    }
    if local.contains("..") {
        return Err("An email address cannot have two periods in a row.".to_owned());
    }
    if let Some(bad) = local.chars().find(|c| *c != '.' && !atext(*c)) {
        return Err(format!(
            "The email address contains invalid characters before the @-sign: {bad:?}."
        ));
    }
    let domain = domain.to_lowercase();
    if domain.len() > 253 {
        return Err("The email address is too long after the @-sign.".to_owned());
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(
            "An email address cannot have a period in this position after the @-sign.".to_owned(),
        );
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        if label.len() > 63 {
            return Err("The email address is too long after the @-sign.".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("An email address cannot have a hyphen immediately after or before a period after the @-sign.".to_owned());
        }
        if let Some(bad) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(format!(
                "The part after the @-sign contains invalid characters: {bad:?}."
            ));
        }
    }
    let tld = labels.last().copied().unwrap_or("");
    if labels.len() < 2 {
        return Err("The part after the @-sign is not valid. It should have a period.".to_owned());
    }
    if tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "The part after the @-sign is not valid. It is not within a valid top-level domain."
                .to_owned(),
        );
    }
    if SPECIAL_USE_DOMAINS.contains(&tld) {
        return Err("The part after the @-sign is a special-use or reserved name that cannot be used with email.".to_owned());
    }
    Ok(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses() {
        for (input, want) in [
            ("alice@example.org", "alice@example.org"),
            ("Alice.B+tag@Example.ORG", "Alice.B+tag@example.org"),
            ("o'neil@sub.kernelci.org", "o'neil@sub.kernelci.org"),
            ("josé@exämple.org", "josé@exämple.org"),
        ] {
            assert_eq!(normalize_address(input).as_deref(), Ok(want), "{input}");
        }
        for (input, reason) in [
            ("", "An email address must have an @-sign."),
            ("alice", "An email address must have an @-sign."),
            ("a@b@example.org", "The email address is not valid. It must have exactly one @-sign."),
            ("@example.org", "There must be something before the @-sign."),
            ("alice@", "There must be something after the @-sign."),
            ("alice@example", "The part after the @-sign is not valid. It should have a period."),
            (".alice@example.org", "An email address cannot start with a period."),
            ("alice.@example.org", "An email address cannot have a period immediately before the @-sign."),
            ("a..b@example.org", "An email address cannot have two periods in a row."),
            ("a b@example.org", "The email address contains invalid characters before the @-sign: ' '."),
            ("alice@-example.org", "An email address cannot have a hyphen immediately after or before a period after the @-sign."),
            ("alice@example..org", "An email address cannot have a period in this position after the @-sign."),
            ("alice@exa_mple.org", "The part after the @-sign contains invalid characters: '_'."),
            ("alice@127.0.0.1", "The part after the @-sign is not valid. It is not within a valid top-level domain."),
            ("alice@host.localhost", "The part after the @-sign is a special-use or reserved name that cannot be used with email."),
            ("alice@x.test", "The part after the @-sign is a special-use or reserved name that cannot be used with email."),
        ] {
            assert_eq!(normalize_address(input), Err(reason.to_owned()), "{input}");
        }
        let long_local = format!("{}@example.org", "a".repeat(65));
        assert!(normalize_address(&long_local).is_err());
    }
}
