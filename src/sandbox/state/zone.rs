//! The tenant's time zone (`../shared/mambu-api.md` §8, "Time zone (API v2)"): the offset every
//! v2 date-time must carry, the tenant's now and today, months counted on its calendar, and the
//! organization setup that names the zone (`GET /setup/organization`).
//!
//! Mambu (<https://docs.mambu.com/api/pages/api-v2/timezone-offsets/>) computes the offset the
//! tenant's zone has for the date-time sent, daylight saving included, compares it with the
//! offset sent, and refuses a mismatch naming the value without its offset and the offset it
//! expected. API v1 does not check offsets; the sandbox's only v1 call (the settlement link)
//! has no body.

use chrono::{
    DateTime, Days, FixedOffset, LocalResult, Months, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::Tenant;

thread_local! {
    /// The instant an operation runs at, while [`at`] runs it; otherwise the wall clock's.
    static CLOCK: std::cell::Cell<Option<DateTime<Utc>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the tenant's now fixed at `instant` on this thread: an operation sees one
/// instant throughout, and a durable sandbox (`sandbox --state`) replays it at the instant it
/// first ran, so its dates come out as they did.
pub fn at<R>(instant: DateTime<Utc>, f: impl FnOnce() -> R) -> R {
    /// Puts the clock back even if `f` panics (a worker thread outlives a request).
    struct Restore(Option<DateTime<Utc>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CLOCK.set(self.0);
        }
    }
    let _restore = Restore(CLOCK.replace(Some(instant)));
    f()
}

/// The tenant's zone: an IANA zone from the tz database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(Tz);

/// Why a date-time text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DateError {
    /// Not an ISO-8601 date-time.
    Format,
    /// The offset is not the one the zone has at that wall-clock time (or there is none: the
    /// value has no offset, or falls in the hour skipped when clocks go forward). Carries the
    /// value without its offset and the offset the tenant's zone has there.
    Offset {
        local: NaiveDateTime,
        expected: FixedOffset,
    },
}

/// Mambu's wording of an offset refusal, e.g. `Invalid date offset for value
/// 2021-03-09T13:37:50 org offset is +02:00` (the source above).
pub(super) fn offset_message(local: NaiveDateTime, expected: FixedOffset) -> String {
    format!(
        "Invalid date offset for value {} org offset is {expected}",
        local.format("%Y-%m-%dT%H:%M:%S%.f")
    )
}

impl Zone {
    pub fn new(tz: Tz) -> Self {
        Self(tz)
    }

    /// The IANA id, e.g. `Europe/Lisbon`.
    pub fn id(self) -> &'static str {
        self.0.name()
    }

    /// Now, with the offset in force: the wall clock, or the instant [`at`] sets.
    pub(super) fn now(self) -> DateTime<FixedOffset> {
        CLOCK
            .get()
            .unwrap_or_else(Utc::now)
            .with_timezone(&self.0)
            .fixed_offset()
    }

    /// The instant `seconds` after 1970-01-01T00:00:00Z, with the offset the zone has then.
    pub(super) fn at_timestamp(self, seconds: i64) -> Option<DateTime<FixedOffset>> {
        DateTime::from_timestamp(seconds, 0).map(|at| at.with_timezone(&self.0).fixed_offset())
    }

    /// The start of the tenant's current day.
    pub(super) fn today(self) -> DateTime<FixedOffset> {
        let now = self.now();
        self.at_local(now.date_naive().and_time(NaiveTime::MIN))
            .unwrap_or(now)
    }

    /// `months` later on the tenant's calendar: the same wall-clock time, with the offset of
    /// that day (a due date in summer carries the summer offset).
    pub(super) fn add_months(
        self,
        at: DateTime<FixedOffset>,
        months: u32,
    ) -> DateTime<FixedOffset> {
        at.with_timezone(&self.0)
            .naive_local()
            .checked_add_months(Months::new(months))
            .and_then(|local| self.at_local(local))
            .unwrap_or(at)
    }

    /// A wall-clock time with the offset the zone has there. In the hour repeated when clocks
    /// go back, the first; in the hour skipped when they go forward, the time it becomes once
    /// moved forward by the gap, with the offset after it (as java.time resolves it).
    fn at_local(self, local: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
        let offset = match self.0.offset_from_local_datetime(&local) {
            LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o.fix(),
            LocalResult::None => {
                // The offset before the change: no zone changes its offset twice in a day.
                let before = self
                    .0
                    .offset_from_utc_datetime(&local.checked_sub_days(Days::new(1))?)
                    .fix();
                let instant = local.checked_sub_offset(before)?;
                return Some(
                    Utc.from_utc_datetime(&instant)
                        .with_timezone(&self.0)
                        .fixed_offset(),
                );
            }
        };
        local.and_local_timezone(offset).single()
    }

    /// A date-time sent in a v2 body, as Mambu reads it: ISO-8601 with the offset the tenant's
    /// zone has at that wall-clock time.
    pub(super) fn parse(self, text: &str) -> Result<DateTime<FixedOffset>, DateError> {
        let at = match DateTime::parse_from_rfc3339(text) {
            Ok(at) => at,
            Err(_) => {
                // No offset at all: Mambu's own example refuses it with the offset message.
                let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .map_err(|_| DateError::Format)?;
                return Err(self.offset_error(local));
            }
        };
        let local = at.naive_local();
        let sent = *at.offset();
        match self.0.offset_from_local_datetime(&local) {
            LocalResult::Single(o) if o.fix() == sent => Ok(at),
            // The hour repeated when clocks go back: each offset names its own instant, at
            // which the zone had that offset, so both are accepted.
            LocalResult::Ambiguous(a, b) if a.fix() == sent || b.fix() == sent => Ok(at),
            // Stricter reading: Mambu says only that a time in the hour skipped when clocks go
            // forward results in "API error messages related to the offset"; it is refused
            // whatever offset it carries (even one naming a real instant), with the offset
            // message naming the offset in force once the clocks have moved.
            _ => Err(self.offset_error(local)),
        }
    }

    /// The refusal of `local`, naming the offset [`Zone::at_local`] gives it: in the repeated
    /// hour the first offset (the record shows no example there), after the skipped hour the
    /// new one.
    fn offset_error(self, local: NaiveDateTime) -> DateError {
        let expected = self.at_local(local).map_or_else(
            || self.0.offset_from_utc_datetime(&local).fix(),
            |at| *at.offset(),
        );
        DateError::Offset { local, expected }
    }
}

/// A date-time to the second from 1970 to 2106, in the tenant's zone, in 4 bytes: the seconds
/// since 1970-01-01T00:00:00Z, plus one (so that an `Option<Stamp>` takes 4 bytes too). The
/// offset is the one the zone has at that instant. Made only where it reads back exactly
/// ([`Stamp::of`]): a caller keeps any other date-time as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp(std::num::NonZeroU32);

impl Stamp {
    /// 1970-01-01T00:00:00Z: what a record whose dates are kept elsewhere holds.
    pub(super) const EPOCH: Stamp = Stamp(std::num::NonZeroU32::MIN);

    /// `at` exactly, if it is to the second, in range, and carries the zone's offset.
    pub(super) fn of(at: DateTime<FixedOffset>, zone: Zone) -> Option<Stamp> {
        if at.timestamp_subsec_nanos() != 0 {
            return None;
        }
        let n = u32::try_from(at.timestamp().checked_add(1)?).ok()?;
        let stamp = Stamp(std::num::NonZeroU32::new(n)?);
        let back = stamp.get(zone)?;
        (back == at && back.offset() == at.offset()).then_some(stamp)
    }

    pub(super) fn get(self, zone: Zone) -> Option<DateTime<FixedOffset>> {
        zone.at_timestamp(i64::from(self.0.get()) - 1)
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self(Tz::UTC)
    }
}

impl Tenant {
    /// GET /setup/organization: Mambu's `OrganizationSetup` (skyleague/mambu-sdk,
    /// `src/organization-details/`). The zone is the tenant's, the name and currency its
    /// profile's; the formats are a plausible fixed setup.
    pub fn organization_setup(&self, institution_name: &str, currency: &str) -> Value {
        json!({
            "institutionName": institution_name,
            "timeZoneID": self.zone.id(),
            "currency": currency,
            "dateFormat": "dd-MM-yyyy",
            "dateTimeFormat": "dd-MM-yyyy HH:mm:ss",
            "decimalSeparator": "POINT",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lisbon() -> Zone {
        Zone::new(chrono_tz::Europe::Lisbon)
    }

    fn accepts(zone: Zone, texts: &[&str]) {
        for text in texts {
            assert!(zone.parse(text).is_ok(), "{text}: {:?}", zone.parse(text));
        }
    }

    fn refused(zone: Zone, text: &str) -> String {
        match zone.parse(text) {
            Err(DateError::Offset { local, expected }) => offset_message(local, expected),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn the_offset_must_be_the_zones_at_that_date() {
        let zone = lisbon();
        accepts(
            zone,
            &["2024-01-15T10:00:00+00:00", "2024-07-15T10:00:00+01:00"],
        );
        assert_eq!(
            refused(zone, "2024-01-15T10:00:00+01:00"),
            "Invalid date offset for value 2024-01-15T10:00:00 org offset is +00:00"
        );
        assert_eq!(
            refused(zone, "2024-07-15T10:00:00+00:00"),
            "Invalid date offset for value 2024-07-15T10:00:00 org offset is +01:00"
        );
        assert_eq!(
            refused(
                Zone::new(chrono_tz::Europe::Helsinki),
                "2021-03-09T13:37:50+03:00"
            ),
            "Invalid date offset for value 2021-03-09T13:37:50 org offset is +02:00",
            "Mambu's own example"
        );
    }

    #[test]
    fn a_value_without_offset_is_refused_with_the_offset_it_needs() {
        assert_eq!(
            refused(
                Zone::new(chrono_tz::Europe::Helsinki),
                "2021-03-09T13:37:50"
            ),
            "Invalid date offset for value 2021-03-09T13:37:50 org offset is +02:00"
        );
        assert_eq!(lisbon().parse("15/01/2024"), Err(DateError::Format));
        assert_eq!(lisbon().parse("2024-01-15"), Err(DateError::Format));
    }

    #[test]
    fn the_skipped_hour_is_refused_whatever_its_offset() {
        // Lisbon, 2024-03-31: 01:00 +00:00 becomes 02:00 +01:00.
        let zone = lisbon();
        for text in ["2024-03-31T01:30:00+00:00", "2024-03-31T01:30:00+01:00"] {
            assert_eq!(
                refused(zone, text),
                "Invalid date offset for value 2024-03-31T01:30:00 org offset is +01:00"
            );
        }
        accepts(
            zone,
            &["2024-03-31T00:59:59+00:00", "2024-03-31T02:00:00+01:00"],
        );
    }

    #[test]
    fn the_repeated_hour_takes_either_offset() {
        // Lisbon, 2024-10-27: 02:00 +01:00 becomes 01:00 +00:00, so 01:30 happens twice.
        let zone = lisbon();
        accepts(
            zone,
            &["2024-10-27T01:30:00+01:00", "2024-10-27T01:30:00+00:00"],
        );
        assert_eq!(
            refused(zone, "2024-10-27T01:30:00+02:00"),
            "Invalid date offset for value 2024-10-27T01:30:00 org offset is +01:00"
        );
    }

    #[test]
    fn utc_takes_only_utc_and_z_is_utc() {
        let zone = Zone::default();
        accepts(zone, &["2024-07-15T00:00:00+00:00", "2024-07-15T00:00:00Z"]);
        assert_eq!(
            refused(zone, "2024-07-15T00:00:00.250+01:00"),
            "Invalid date offset for value 2024-07-15T00:00:00.250 org offset is +00:00"
        );
    }

    #[test]
    fn months_are_counted_on_the_tenants_calendar() {
        let zone = lisbon();
        let first = zone.parse("2024-02-15T00:00:00+00:00").unwrap();
        assert_eq!(
            zone.add_months(first, 2).to_rfc3339(),
            "2024-04-15T00:00:00+01:00"
        );
        let late = zone.parse("2024-01-31T01:30:00+00:00").unwrap();
        assert_eq!(
            zone.add_months(late, 2).to_rfc3339(),
            "2024-03-31T02:30:00+01:00",
            "a wall-clock time in the skipped hour moves forward by it"
        );
    }

    #[test]
    fn a_day_starting_in_the_gap_starts_after_it() {
        // Santiago, 2024-09-08: midnight -04:00 becomes 01:00 -03:00.
        let zone = Zone::new(chrono_tz::America::Santiago);
        let local =
            NaiveDateTime::parse_from_str("2024-09-08T00:00:00", "%Y-%m-%dT%H:%M:%S").unwrap();
        assert_eq!(
            zone.at_local(local).unwrap().to_rfc3339(),
            "2024-09-08T01:00:00-03:00"
        );
        assert_eq!(
            refused(zone, "2024-09-08T00:30:00-04:00"),
            "Invalid date offset for value 2024-09-08T00:30:00 org offset is -03:00"
        );
    }
}
