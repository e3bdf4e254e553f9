//! Token arithmetic (SPEC §4.6, §4.7): the lifetimes a Create asks for and the expiry
//! after a renewal, with additions that saturate (D-7).

use super::TokenSettings;

/// The token lifetimes a Create request asks for (T-CREATE-2, T-CREATE-3): issue, max
/// and expiry timestamps. Additions saturate (D-7).
pub fn create_times(settings: &TokenSettings, requested_max_lifetime_ms: i64, now: i64) -> (i64, i64, i64) {
    let mut max_life = settings.max_lifetime_ms;
    if requested_max_lifetime_ms > 0 {
        max_life = max_life.min(requested_max_lifetime_ms);
    }
    let max_ts = now.saturating_add(max_life);
    (now, max_ts, max_ts.min(now.saturating_add(settings.expiry_time_ms)))
}

/// The expiry after a renewal at `now` (T-RENEW-1, T-RENEW-2): never past the server's
/// renew interval, never past `max_ts`.
pub fn renewed_expiry(settings: &TokenSettings, max_ts: i64, requested_period_ms: i64, now: i64) -> i64 {
    let mut period = settings.expiry_time_ms;
    if requested_period_ms > 0 {
        period = period.min(requested_period_ms);
    }
    max_ts.min(now.saturating_add(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: TokenSettings = TokenSettings::TESTS;

    /// T-CREATE-2, T-CREATE-3: lifetimes, clamps and saturation.
    #[test]
    fn t_create_3_lifetime_arithmetic() {
        let now = 1_000_000;
        assert_eq!(create_times(&S, -1, now), (now, now + 7 * 86_400_000, now + 86_400_000));
        assert_eq!(create_times(&S, 0, now), create_times(&S, -1, now), "0 means the server default");
        assert_eq!(create_times(&S, 3_600_000, now), (now, now + 3_600_000, now + 3_600_000), "expiry capped by max");
        assert_eq!(create_times(&S, 30 * 86_400_000, now).1, now + 7 * 86_400_000, "cannot exceed the server max");
        let huge = TokenSettings { max_lifetime_ms: i64::MAX, expiry_time_ms: i64::MAX, ..S };
        assert_eq!(create_times(&huge, -1, now), (now, i64::MAX, i64::MAX), "D-7: saturating");
    }

    /// T-RENEW-1, T-RENEW-2: the period is capped by the server's renew interval and max.
    #[test]
    fn t_renew_1_period_is_capped() {
        let now = 1_000_000;
        let max = now + 3 * 86_400_000;
        assert_eq!(renewed_expiry(&S, max, -1, now), now + 86_400_000);
        assert_eq!(renewed_expiry(&S, max, 0, now), now + 86_400_000);
        assert_eq!(renewed_expiry(&S, max, 5_000, now), now + 5_000);
        assert_eq!(renewed_expiry(&S, max, 10 * 86_400_000, now), now + 86_400_000, "never past the interval");
        assert_eq!(renewed_expiry(&S, now + 10, 5_000, now), now + 10, "never past max");
        assert_eq!(renewed_expiry(&S, i64::MAX, i64::MAX, i64::MAX - 1), i64::MAX, "D-7: saturating");
    }
}
