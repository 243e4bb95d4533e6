//! Fixed time buckets in Swedish local time (CET/CEST).
//!
//! Everything is counted per UTC hour (hours since the Unix epoch); Sweden's
//! offset is always a whole number of hours, so a UTC hour is also exactly one
//! local hour. Days, weeks and profile slots follow the local clock, because
//! "Friday night at 23" means local time to everyone who reads the picture.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a release groups hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BucketKind {
    /// One hour.
    Hour,
    /// One local calendar day.
    Day,
    /// One ISO week (Monday 00:00 local).
    Week,
    /// Hour of the day (0–23, local), summed over whole calendar months.
    HourOfDay,
    /// Hour of the week (0 = Monday 00–01 local … 167), summed over whole months.
    HourOfWeek,
}

/// Every bucket kind, in the order the command line lists them.
pub const BUCKET_KINDS: [BucketKind; 5] = [
    BucketKind::Hour,
    BucketKind::Day,
    BucketKind::Week,
    BucketKind::HourOfDay,
    BucketKind::HourOfWeek,
];

impl BucketKind {
    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::HourOfDay => "hour-of-day",
            Self::HourOfWeek => "hour-of-week",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        BUCKET_KINDS
            .into_iter()
            .find(|k| k.name() == name.trim().to_ascii_lowercase().replace('_', "-"))
    }

    /// Whether this is a profile (slots summed over periods) rather than a time series.
    pub fn is_profile(self) -> bool {
        matches!(self, Self::HourOfDay | Self::HourOfWeek)
    }

    /// The shortest stretch of time one value of this kind can describe, in hours.
    /// Profiles have one-hour slots.
    pub fn resolution_hours(self) -> u32 {
        match self {
            Self::Hour | Self::HourOfDay | Self::HourOfWeek => 1,
            Self::Day => 24,
            Self::Week => 24 * 7,
        }
    }

    /// Whether a peer whose finest bucket is `finest` may receive this kind: its
    /// values must not describe a shorter stretch of time.
    pub fn allowed_under(self, finest: BucketKind) -> bool {
        self.resolution_hours() >= finest.resolution_hours()
    }

    /// The fixed period the window snaps to: the bucket itself for a time series,
    /// a calendar month for a profile. Each period is thresholded on its own, so
    /// two windows that differ by one report differ by whole periods.
    fn period_start(self, hour: u32) -> u32 {
        match self {
            Self::Hour => hour,
            Self::Day => local_day_start(hour),
            Self::Week => local_week_start(hour),
            Self::HourOfDay | Self::HourOfWeek => local_month_start(hour),
        }
    }

    fn next_period_start(self, hour: u32) -> u32 {
        let start = self.period_start(hour);
        match self {
            Self::Hour => start + 1,
            // 26 hours past a day start is always inside the next day (a local
            // day is 23, 24 or 25 hours long).
            Self::Day => local_day_start(start + 26),
            Self::Week => local_week_start(start + 7 * 24 + 2),
            Self::HourOfDay | Self::HourOfWeek => local_month_start(start + 32 * 24),
        }
    }

    /// The window `from_hour..to_hour` widened to whole periods: the periods that
    /// touch it. An empty window stays empty.
    pub fn snap(self, from_hour: u32, to_hour: u32) -> (u32, u32) {
        if to_hour <= from_hour {
            let start = self.period_start(from_hour);
            return (start, start);
        }
        (
            self.period_start(from_hour),
            self.next_period_start(to_hour - 1),
        )
    }

    /// The period (for the threshold) and the bucket (for the release) of `hour`.
    /// Time-series buckets are named by their first UTC hour; profile buckets by
    /// their slot.
    pub fn classify(self, hour: u32) -> (u32, u32) {
        let period = self.period_start(hour);
        let bucket = match self {
            Self::Hour | Self::Day | Self::Week => period,
            Self::HourOfDay => local_hour(hour) % 24,
            Self::HourOfWeek => {
                let local = local_hour(hour);
                weekday(local / 24) * 24 + local % 24
            }
        };
        (period, bucket)
    }
}

impl fmt::Display for BucketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// 0 = Monday … 6 = Sunday, of a day number since 1970-01-01 (a Thursday).
fn weekday(days: u32) -> u32 {
    (days + 3) % 7
}

/// The UTC hour (since the epoch) at which summer time starts or ends in `year`:
/// 01:00 UTC on the last Sunday of `month` (EU rule, in force in Sweden since 1996).
fn last_sunday_0100_utc(year: i64, month: u32) -> i64 {
    let last_day = days_from_civil(year, month, 31);
    let back = (last_day + 3).rem_euclid(7) - 6; // Monday=0 … Sunday=6
    let sunday = last_day - back.rem_euclid(7);
    sunday * 24 + 1
}

/// Sweden's offset from UTC, in hours, during UTC hour `hour`.
pub fn offset_hours(hour: u32) -> u32 {
    let (year, _, _) = civil_from_days(i64::from(hour / 24));
    let h = i64::from(hour);
    if h >= last_sunday_0100_utc(year, 3) && h < last_sunday_0100_utc(year, 10) {
        2
    } else {
        1
    }
}

/// The local hour index (local hours since local 1970-01-01 00:00) of UTC hour `hour`.
pub fn local_hour(hour: u32) -> u32 {
    hour + offset_hours(hour)
}

/// The UTC hour of local hour index `local`, for local hours that exist once
/// (midnights always do: the clock changes at 02:00/03:00).
fn utc_of_local(local: u32) -> u32 {
    let guess = local.saturating_sub(2);
    if local_hour(guess) == local {
        guess
    } else {
        local.saturating_sub(1)
    }
}

fn local_day_start(hour: u32) -> u32 {
    utc_of_local(local_hour(hour) / 24 * 24)
}

fn local_week_start(hour: u32) -> u32 {
    let day = local_hour(hour) / 24;
    utc_of_local((day - weekday(day).min(day)) * 24)
}

fn local_month_start(hour: u32) -> u32 {
    let (year, month, _) = civil_from_days(i64::from(local_hour(hour) / 24));
    utc_of_local((days_from_civil(year, month, 1) * 24) as u32)
}

/// The local calendar day index (days since 1970-01-01 local) of UTC hour `hour`;
/// daily budgets roll over on it.
pub fn local_day(hour: u32) -> u32 {
    local_hour(hour) / 24
}

/// The first UTC hour of local day `day`.
pub fn start_of_local_day(day: u32) -> u32 {
    utc_of_local(day * 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(y: i64, mo: u32, d: u32, h: u32) -> u32 {
        (days_from_civil(y, mo, d) * 24) as u32 + h
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1, 0, 1, 59, 365, 10_957, 20_000, 20_513, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2026, 11, 25), 20_782);
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }

    #[test]
    fn summer_time_follows_the_eu_rule() {
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(offset_hours(hour(2026, 3, 29, 0)), 1);
        assert_eq!(offset_hours(hour(2026, 3, 29, 1)), 2);
        assert_eq!(offset_hours(hour(2026, 10, 25, 0)), 2);
        assert_eq!(offset_hours(hour(2026, 10, 25, 1)), 1);
        assert_eq!(offset_hours(hour(2026, 1, 15, 12)), 1);
        assert_eq!(offset_hours(hour(2026, 7, 15, 12)), 2);
    }

    #[test]
    fn days_and_weeks_start_at_local_midnight() {
        // 25 Nov 2026 is a Wednesday; local midnight is 23:00 UTC the day before.
        let noon = hour(2026, 11, 25, 11);
        assert_eq!(BucketKind::Day.classify(noon).1, hour(2026, 11, 24, 23));
        assert_eq!(BucketKind::Week.classify(noon).1, hour(2026, 11, 22, 23));
        // Summer: local midnight is 22:00 UTC.
        let summer = hour(2026, 7, 15, 10);
        assert_eq!(BucketKind::Day.classify(summer).1, hour(2026, 7, 14, 22));
        // 23:30 UTC on 24 Nov is 00:30 local on the 25th: already the next day.
        assert_eq!(
            BucketKind::Day.classify(hour(2026, 11, 24, 23)).1,
            hour(2026, 11, 24, 23)
        );
    }

    #[test]
    fn profile_slots_use_local_clock() {
        // 21:00 UTC on Friday 27 Nov 2026 is 22:00 local, Friday (weekday 4).
        let h = hour(2026, 11, 27, 21);
        assert_eq!(BucketKind::HourOfDay.classify(h).1, 22);
        assert_eq!(BucketKind::HourOfWeek.classify(h).1, 4 * 24 + 22);
        // Profiles are thresholded per local calendar month.
        assert_eq!(BucketKind::HourOfDay.classify(h).0, hour(2026, 10, 31, 23));
    }

    #[test]
    fn days_around_clock_changes_have_23_and_25_hours() {
        let spring = BucketKind::Day.snap(hour(2026, 3, 29, 5), hour(2026, 3, 29, 6));
        assert_eq!(spring.1 - spring.0, 23);
        let autumn = BucketKind::Day.snap(hour(2026, 10, 25, 5), hour(2026, 10, 25, 6));
        assert_eq!(autumn.1 - autumn.0, 25);
    }

    #[test]
    fn windows_snap_outward_to_whole_periods() {
        let (from, to) = (hour(2026, 11, 10, 7), hour(2026, 11, 12, 3));
        assert_eq!(BucketKind::Hour.snap(from, to), (from, to));
        assert_eq!(
            BucketKind::Day.snap(from, to),
            (hour(2026, 11, 9, 23), hour(2026, 11, 12, 23))
        );
        assert_eq!(
            BucketKind::HourOfDay.snap(from, to),
            (hour(2026, 10, 31, 23), hour(2026, 11, 30, 23))
        );
        assert_eq!(
            BucketKind::Day.snap(from, from).0,
            BucketKind::Day.snap(from, from).1
        );
    }

    #[test]
    fn finer_buckets_are_not_allowed_under_coarser_ones() {
        assert!(BucketKind::Day.allowed_under(BucketKind::Hour));
        assert!(BucketKind::HourOfDay.allowed_under(BucketKind::Hour));
        assert!(!BucketKind::HourOfDay.allowed_under(BucketKind::Day));
        assert!(!BucketKind::Hour.allowed_under(BucketKind::Day));
        assert!(BucketKind::Week.allowed_under(BucketKind::Day));
    }
}
