//! Wall-clock stamps for logs and the status page.

/// Current time as (RFC 3339 string, unix milliseconds).
pub fn now_stamp() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        now.timestamp_millis(),
    )
}
