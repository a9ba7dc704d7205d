//! Credentials out of everything a person or a machine reads back: logs, errors,
//! metrics labels, the summary, `--print-config`.
//!
//! Cameras take credentials in the user info (`rtsp://user:pass@host/…`) and, just
//! as often, in the query (`…/live?user=admin&password=…`, signed URLs'
//! `token=`/`signature=`). [`url`] parses an input with the `url` crate and rebuilds
//! it with the user info replaced by `***` and the value of every credential-like
//! query parameter replaced by `***` (the parameter's name stays, so a reader still
//! sees what was configured). [`text`] does the same for every URL inside a longer
//! message (GStreamer quotes URIs in its errors).
//!
//! A string that does not parse as a URL but looks like one (`rtsp://bob:pa/ss@h/x`,
//! an unencoded `/` in a password) is redacted conservatively: everything between
//! `://` and the last `@` before the query goes. Plain paths pass unchanged.

/// What replaces a secret.
const MASK: &str = "***";

/// Query parameter names (compared without case, `-` and `_`) whose values are
/// secrets: exact names, then fragments that mark a name as one (`api_key`,
/// `access_token`, `X-Amz-Signature`, `passwd`).
const SECRET_NAMES: [&str; 6] = ["user", "username", "login", "pass", "pwd", "key"];
const SECRET_FRAGMENTS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "auth",
    "signature",
    "credential",
    "apikey",
];

/// Whether a query parameter called `name` carries a secret.
pub fn is_secret_param(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.contains(&n.as_str())
        || SECRET_FRAGMENTS.iter().any(|f| n.contains(f))
        || n.ends_with("key")
        || n.ends_with("sig")
}

/// `input` with its user info and credential-like query values masked. Inputs that
/// are not URLs (paths, `camera:0`, `test:ball`) come back unchanged.
pub fn url(input: &str) -> String {
    let Some(scheme_end) = input.find("://") else {
        return input.to_string();
    };
    let before_query = input[scheme_end + 3..]
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    match url::Url::parse(input) {
        // An `@` outside the user info (`rtsp://a:1/x@host/`) may be a password
        // with an unencoded `/` that some client reads differently: masked too.
        Ok(parsed) if parsed.username().is_empty() && before_query.contains('@') => {
            fallback(input, scheme_end)
        }
        Ok(parsed) => rebuild(&parsed),
        Err(_) => fallback(input, scheme_end),
    }
}

/// A parsed URL, rebuilt from its parts with the secrets masked.
fn rebuild(u: &url::Url) -> String {
    let mut out = format!("{}://", u.scheme());
    if !u.username().is_empty() || u.password().is_some() {
        out.push_str(MASK);
        out.push('@');
    }
    if let Some(host) = u.host_str() {
        out.push_str(host);
    }
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(u.path());
    if let Some(q) = u.query() {
        out.push('?');
        out.push_str(&mask_query(q));
    }
    if let Some(f) = u.fragment() {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `a=1&password=x&token` → `a=1&password=***&token`, order and encoding kept.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(&decoded(name)) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn decoded(name: &str) -> String {
    url::form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// For strings `url` rejects: drop everything up to the last `@` before the query
/// (an `@` can only be in the path of a valid URL, and this one is not valid), and
/// mask the query.
fn fallback(input: &str, scheme_end: usize) -> String {
    let rest = &input[scheme_end + 3..];
    let (before_query, query) = match rest.find(['?', '#']) {
        Some(q) => rest.split_at(q),
        None => (rest, ""),
    };
    let host_on = match before_query.rfind('@') {
        Some(at) => format!("{MASK}@{}", &before_query[at + 1..]),
        None => before_query.to_string(),
    };
    let query = match query.strip_prefix('?') {
        Some(q) => {
            let (q, fragment) = q.split_once('#').map_or((q, None), |(a, b)| (a, Some(b)));
            let mut s = format!("?{}", mask_query(q));
            if let Some(f) = fragment {
                s.push('#');
                s.push_str(f);
            }
            s
        }
        None => query.to_string(),
    };
    format!("{}://{host_on}{query}", &input[..scheme_end])
}

/// Characters that end a URL inside a message.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '(' | ')' | '<' | '>' | '`')
}

/// [`url`] applied to every URL inside a longer text.
pub fn text(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find("://") {
        // The scheme starts after the last character that cannot be in one
        // (stepping over it by its UTF-8 length: it may be more than a byte).
        let start = rest[..pos]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(*c)))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[pos..].find(ends_url).map_or(rest.len(), |e| pos + e);
        // A URL that ends in punctuation of the sentence around it (`…/a: error`).
        let trimmed = rest[start..end].trim_end_matches([':', ',', ';', '.']);
        out.push_str(&rest[..start]);
        out.push_str(&url(trimmed));
        rest = &rest[start + trimmed.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by `never_panics` in CI: a multi-byte character just before `://`.
    #[test]
    fn a_multibyte_character_before_a_scheme_is_not_cut() {
        assert_eq!(text("G*🕴ਹ://]/sy*f"), "G*🕴ਹ://]/sy*f");
        assert_eq!(text("ਹrtsp://u:p@h/x"), "ਹrtsp://***@h/x");
    }

    #[test]
    fn user_info_is_masked() {
        assert_eq!(
            url("rtsp://admin:s3cret@10.0.0.5:554/live"),
            "rtsp://***@10.0.0.5:554/live"
        );
        assert_eq!(url("rtsp://admin@cam/x"), "rtsp://***@cam/x");
        // An @ in the path may be a password with an unencoded "/": masked too.
        assert_eq!(url("rtsp://cam/a@b"), "rtsp://***@b");
        assert_eq!(url("/videos/x.mp4"), "/videos/x.mp4");
        assert_eq!(url("test:ball?width=320"), "test:ball?width=320");
    }

    #[test]
    fn credential_query_values_are_masked_and_the_rest_kept() {
        assert_eq!(
            url("rtsp://127.0.0.1:9/live?user=admin&password=hunter2&channel=2"),
            "rtsp://127.0.0.1:9/live?user=***&password=***&channel=2"
        );
        assert_eq!(
            url("https://cdn.example/a.m3u8?X-Amz-Signature=abc&X-Amz-Credential=k&expires=9"),
            "https://cdn.example/a.m3u8?X-Amz-Signature=***&X-Amz-Credential=***&expires=9"
        );
        for name in [
            "pwd",
            "PASS",
            "token",
            "access_token",
            "api_key",
            "auth",
            "sig",
        ] {
            assert_eq!(
                url(&format!("http://h/x?{name}=v")),
                format!("http://h/x?{name}=***")
            );
        }
        assert_eq!(
            url("http://h/x?keyframe_only=1"),
            "http://h/x?keyframe_only=1"
        );
    }

    #[test]
    fn unparseable_urls_lose_everything_before_the_last_at() {
        // An unencoded "/" in the password: the URL parser sees a bad port.
        assert_eq!(url("rtsp://bob:pa/ss@host/x"), "rtsp://***@host/x");
        assert_eq!(
            url("rtsp://bob:pa/ss@host/x?token=t"),
            "rtsp://***@host/x?token=***"
        );
    }

    #[test]
    fn urls_inside_messages_are_masked() {
        let msg = "Could not open resource (rtsp://admin:pw@cam:554/a): rtsp://h/b?password=x: and http://plain/c";
        assert_eq!(
            text(msg),
            "Could not open resource (rtsp://***@cam:554/a): rtsp://h/b?password=***: and http://plain/c"
        );
    }

    proptest! {
        /// Whatever the password and the query around it, it never survives.
        #[test]
        fn secrets_never_survive(
            user in "[a-z]{1,8}",
            secret in "[A-Za-z0-9/:%!$]{6,16}",
            host in "[a-z]{1,10}(\\.[a-z]{2,5})?",
            param in prop::sample::select(vec!["password", "pwd", "token", "user", "key"]),
            prefix in "[a-z]{0,6}",
        ) {
            let in_userinfo = format!("rtsp://{user}:{secret}@{host}/live");
            prop_assert!(!url(&in_userinfo).contains(&secret), "{}", url(&in_userinfo));
            let in_query = format!("rtsp://{host}/live?a=1&{param}={secret}");
            prop_assert!(!url(&in_query).contains(&secret), "{}", url(&in_query));
            let in_text = format!("{prefix} ({in_userinfo}) {in_query}: failed");
            prop_assert!(!text(&in_text).contains(&secret), "{}", text(&in_text));
        }

        /// Text without a URL is never changed, and redaction never panics.
        #[test]
        fn plain_text_is_untouched(s in "[^:]*") {
            prop_assert_eq!(text(&s), s);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = text(&s);
            let _ = url(&s);
        }
    }
}
