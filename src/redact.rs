//! Credentials in camera URLs must never reach a response, a log line or an error message.

/// Masks the password of `scheme://user:password@host/…` as `scheme://user:***@host/…`
/// (a lone `user@` is masked too: some cameras take a token there). Anything else is returned as is.
pub fn redact_url(source: &str) -> String {
    let Some(scheme_end) = source.find("://") else {
        return source.to_string();
    };
    let rest = &source[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return source.to_string();
    };
    let userinfo = &authority[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{}{}", &source[..scheme_end + 3], masked, &rest[at..])
}

/// Replaces every occurrence of `source`'s secret parts inside `text` (e.g. an OpenCV error that quotes the URL).
pub fn redact_in(text: &str, source: &str) -> String {
    let redacted = redact_url(source);
    if redacted == source {
        return text.to_string();
    }
    text.replace(source, &redacted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked() {
        assert_eq!(
            redact_url("rtsp://admin:s3cret@192.168.1.10:554/stream1"),
            "rtsp://admin:***@192.168.1.10:554/stream1"
        );
    }

    #[test]
    fn password_with_at_sign_is_masked() {
        assert_eq!(redact_url("rtsp://u:p@ss@host/x"), "rtsp://u:***@host/x");
    }

    #[test]
    fn lone_token_is_masked() {
        assert_eq!(redact_url("rtsp://token@host/x"), "rtsp://***@host/x");
    }

    #[test]
    fn plain_sources_are_untouched() {
        assert_eq!(redact_url("rtsp://host:554/x"), "rtsp://host:554/x");
        assert_eq!(redact_url("data/1.mp4"), "data/1.mp4");
        assert_eq!(redact_url("rtsp://host/path@x"), "rtsp://host/path@x");
    }

    #[test]
    fn secrets_inside_messages_are_masked() {
        let src = "rtsp://a:b@h/s";
        assert_eq!(redact_in("could not open rtsp://a:b@h/s", src), "could not open rtsp://a:***@h/s");
    }
}
