//! Wall-clock instants as milliseconds since the Unix epoch. Deadlines are persisted in this
//! form so a timer set before a crash fires at the same wall-clock moment after it.
//!
//! While the process runs, its clock never jumps: `Timestamp::now` follows the system clock's
//! small corrections (NTP slewing) but not a step of more than `STEP_MS` either way. After a
//! step it keeps counting on the monotonic clock from where it was, so a clock set an hour
//! forward does not make every cooldown and retry due at once, and one set back does not hold
//! them for an hour. A restart takes up the system clock again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Reads the process clock (see the module's doc). Only the IO shells call this; cores
    /// get `now` as an argument.
    pub fn now() -> Self {
        use std::sync::OnceLock;
        static CLOCK: OnceLock<ProcessClock> = OnceLock::new();
        CLOCK.get_or_init(ProcessClock::start).now()
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn plus_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn saturating_sub(self, other: Timestamp) -> u64 {
        self.0.saturating_sub(other.0)
    }

    /// `2026-05-29T22:45:00.000Z`: RFC 3339, UTC, milliseconds.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        let dt =
            OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }

    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).ok().map(Timestamp)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A step of the system clock larger than this is not followed while running.
const STEP_MS: i64 = 5_000;

/// The process clock: an offset from the monotonic clock to the wall clock, adjusted as long
/// as the wall clock only drifts, and never going back.
struct ProcessClock {
    started: std::time::Instant,
    state: std::sync::Mutex<ClockState>,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Wall-clock milliseconds minus monotonic milliseconds since `started`.
    offset: i64,
    /// The last time handed out.
    last: u64,
    /// A step was seen (and reported once).
    stepped: bool,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ProcessClock {
    fn start() -> ProcessClock {
        ProcessClock {
            started: std::time::Instant::now(),
            state: std::sync::Mutex::new(ClockState {
                offset: wall_ms(),
                last: 0,
                stepped: false,
            }),
        }
    }

    fn now(&self) -> Timestamp {
        let mono = self.started.elapsed().as_millis() as i64;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (t, step) = state.tick(wall_ms(), mono);
        drop(state);
        if let Some(step_ms) = step {
            tracing::warn!(
                step_ms,
                "the system clock stepped; timers keep the process's own time until a restart"
            );
        }
        Timestamp(t)
    }
}

impl ClockState {
    /// The time at wall-clock `wall` and monotonic `mono` (ms), and the size of a step of the
    /// wall clock seen for the first time.
    fn tick(&mut self, wall: i64, mono: i64) -> (u64, Option<i64>) {
        let expected = self.offset + mono;
        let gap = wall - expected;
        let mut step = None;
        if self.stepped || gap.abs() > STEP_MS {
            if !self.stepped {
                step = Some(gap);
            }
            self.stepped = true;
        } else {
            // Drift or slewing: follow the wall clock.
            self.offset = wall - mono;
        }
        let t = u64::try_from(self.offset + mono)
            .unwrap_or(0)
            .max(self.last);
        self.last = t;
        (t, step)
    }
}

/// JSON carries RFC 3339 text; the store (bincode, not human readable) carries the integer.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom("must be an RFC 3339 timestamp"))
        } else {
            u64::deserialize(d).map(Timestamp)
        }
    }
}

/// In the API document: RFC 3339 UTC text with milliseconds.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples(["2026-05-29T22:45:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(at: i64) -> ClockState {
        ClockState {
            offset: at,
            last: 0,
            stepped: false,
        }
    }

    #[test]
    fn the_clock_follows_drift_but_not_a_step_and_never_goes_back() {
        let hour = 3_600_000;
        // Drift of a few milliseconds is followed.
        let mut c = clock(1_000_000);
        assert_eq!(c.tick(1_000_100, 100), (1_000_100, None));
        assert_eq!(c.tick(1_000_203, 200), (1_000_203, None));
        // Slewing back a little never makes time go back.
        assert_eq!(c.tick(1_000_250, 300), (1_000_250, None));
        assert_eq!(c.tick(1_000_240, 301), (1_000_250, None));
        // An hour forward: seen once, not followed; time goes on at the monotonic rate.
        let (t, step) = c.tick(1_000_400 + hour, 400);
        // (The last drift set the offset to 1_000_240 - 301.)
        assert_eq!(step, Some(hour + 61));
        assert_eq!(t, 1_000_339);
        assert_eq!(c.tick(1_001_400 + hour, 1_400), (1_001_339, None));
        // And an hour back, after: still the monotonic time.
        let mut c = clock(5 * hour);
        let (t, step) = c.tick(4 * hour + 1_000, 1_000);
        assert_eq!((t, step), ((5 * hour + 1_000) as u64, Some(-hour)));
        assert_eq!(
            c.tick(4 * hour + 61_000, 61_000).0,
            (5 * hour + 61_000) as u64
        );
    }

    /// Any sequence of wall-clock readings gives a time that never decreases and advances
    /// with the monotonic clock.
    #[test]
    fn the_process_time_never_decreases() {
        use proptest::prelude::*;
        proptest!(|(readings in proptest::collection::vec((-7_200_000i64..7_200_000, 0i64..10_000), 1..200))| {
            let mut c = clock(1_700_000_000_000);
            let (mut mono, mut last) = (0i64, 0u64);
            for (skew, advance) in readings {
                mono += advance;
                let (t, _) = c.tick(1_700_000_000_000 + mono + skew, mono);
                prop_assert!(t >= last);
                last = t;
            }
        });
    }

    #[test]
    fn rfc3339_round_trip_keeps_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-05-29T22:45:00.123Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-05-29T22:45:00.123Z");
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn json_is_text_and_bincode_is_an_integer() {
        let t = Timestamp(1_780_000_000_000);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.starts_with("\"20"));
        let bin = bincode::serialize(&t).unwrap();
        assert_eq!(bin.len(), 8);
        assert_eq!(bincode::deserialize::<Timestamp>(&bin).unwrap(), t);
    }
}
