//! Money and time as TOP sends them, converted to the contract's fen and unix seconds.
//!
//! Both conversions parse text instead of going through floats, so `"0.29"` yuan is exactly 29 fen,
//! and both use no clock and no time-zone database (the wasm stays small and deterministic).

use adapter_kit::json::Field;

use crate::as_i64;

/// Seconds east of UTC of TOP's fixed time zone, GMT+8.
const GMT8_OFFSET_SECONDS: i64 = 8 * 3600;

/// Epoch numbers at or above this (in absolute value) are milliseconds: 10^11 ms is March 1973,
/// while 10^11 s is the year 5138.
const MILLIS_THRESHOLD: i64 = 100_000_000_000;

/// An amount in yuan (a JSON number or a decimal string) as integer fen.
///
/// Accepts `10`, `10.5`, `"10"`, `"10.50"`, `" 0.29 "`, `"-1.5"` and exponents (`1e2`). Returns
/// `None` for anything else: non-numbers, empty strings, amounts finer than a fen (`"0.001"`), or
/// amounts that overflow `i64` fen.
///
/// ```
/// use serde_json::json;
/// use top_common::yuan_to_fen;
///
/// assert_eq!(yuan_to_fen(&json!("10.50")), Some(1050));
/// assert_eq!(yuan_to_fen(&json!(0.29)), Some(29));
/// assert_eq!(yuan_to_fen(&json!("abc")), None);
/// ```
pub fn yuan_to_fen<'a>(value: impl Into<Field<'a>>) -> Option<i64> {
    match value.into() {
        Field::Number(number) => match number.as_i64() {
            Some(yuan) => yuan.checked_mul(100),
            // serde_json prints floats in their shortest round-trip form ("10.5", "1e20"), so
            // the text is the decimal the platform meant.
            None => decimal_to_fen(&number.to_string()),
        },
        Field::Text(text) => decimal_to_fen(text.trim()),
        _ => None,
    }
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` yuan into fen, exactly.
fn decimal_to_fen(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent: i64 = unsigned.get(at + 1..)?.parse().ok()?;
            (unsigned.get(..at)?, exponent)
        }
        None => (unsigned, 0),
    };
    if !(-1000..=1000).contains(&exponent) {
        return None;
    }
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }

    // value = digits * 10^(exponent - fraction.len()), so fen = digits * 10^scale with:
    let mut scale = exponent + 2 - i64::try_from(fraction.len()).ok()?;
    let mut digits = format!("{whole}{fraction}");
    while scale < 0 && digits.ends_with('0') {
        digits.pop();
        scale += 1;
    }
    if scale < 0 {
        // Finer than a fen: refuse rather than round.
        return None;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    let mut fen: i64 = digits.parse().ok()?;
    for _ in 0..scale {
        fen = fen.checked_mul(10)?;
    }
    Some(if negative { -fen } else { fen })
}

/// A TOP time as unix seconds UTC.
///
/// Reads `yyyy-MM-dd HH:mm:ss` in GMT+8 (TOP's zone), also with `T` or `/`, without seconds, with
/// a fraction of a second, or as a bare date (midnight). A bare number is an epoch time: in
/// milliseconds from 10^11 up, else in seconds. Returns `None` for anything else, including
/// impossible dates such as `2023-02-29`.
///
/// ```
/// use top_common::gmt8_to_unix;
///
/// assert_eq!(gmt8_to_unix("2015-01-01 00:00:00"), Some(1_420_041_600));
/// assert_eq!(gmt8_to_unix("1420041600000"), Some(1_420_041_600));
/// assert_eq!(gmt8_to_unix("demo"), None);
/// ```
pub fn gmt8_to_unix(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Some(epoch_seconds(number));
    }
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((date, time)) => (date, time.trim_start()),
        None => (text, ""),
    };
    let mut date_parts = date.split(['-', '/']);
    let year = field(date_parts.next()?, 4, 4)?;
    let month = field(date_parts.next()?, 1, 2)?;
    let day = field(date_parts.next()?, 1, 2)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }

    let (hour, minute, second) = if time.is_empty() {
        (0, 0, 0)
    } else {
        // Drop a fraction of a second: the contract counts whole seconds.
        let whole = time.split_once('.').map_or(time, |(whole, fraction)| {
            if fraction.bytes().all(|b| b.is_ascii_digit()) {
                whole
            } else {
                ""
            }
        });
        let mut time_parts = whole.split(':');
        let hour = field(time_parts.next()?, 1, 2)?;
        let minute = field(time_parts.next()?, 1, 2)?;
        let second = time_parts.next().map_or(Some(0), |s| field(s, 1, 2))?;
        if time_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        (hour, minute, second)
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - GMT8_OFFSET_SECONDS)
}

/// A TOP time given as a string ([`gmt8_to_unix`]) or as an epoch number (ms or s).
pub fn value_to_unix<'a>(value: impl Into<Field<'a>>) -> Option<i64> {
    match value.into() {
        Field::Text(text) => gmt8_to_unix(&text),
        number @ Field::Number(_) => as_i64(number).map(epoch_seconds),
        _ => None,
    }
}

/// An epoch time in **milliseconds** (a JSON integer, integral float or decimal string) as unix
/// seconds, rounded down. Unlike [`value_to_unix`] it does not guess the unit, for APIs whose
/// convention fixes it (Tmall nrt `start_time` / `end_time`).
///
/// ```
/// use serde_json::json;
/// use top_common::millis_to_unix;
///
/// assert_eq!(millis_to_unix(&json!(1767196800000i64)), Some(1_767_196_800));
/// assert_eq!(millis_to_unix(&json!("123345")), Some(123));
/// assert_eq!(millis_to_unix(&json!("2026-01-01")), None);
/// ```
pub fn millis_to_unix<'a>(value: impl Into<Field<'a>>) -> Option<i64> {
    as_i64(value).map(|ms| ms.div_euclid(1000))
}

fn epoch_seconds(number: i64) -> i64 {
    if number
        .checked_abs()
        .is_none_or(|abs| abs >= MILLIS_THRESHOLD)
    {
        number.div_euclid(1000)
    } else {
        number
    }
}

/// A run of `min..=max` ASCII digits as a number.
fn field(text: &str, min: usize, max: usize) -> Option<i64> {
    let ok = (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    if ok { text.parse().ok() } else { None }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yuan_numbers_and_strings_become_exact_fen() {
        let cases = [
            (json!(10), Some(1000)),
            (json!(10.5), Some(1050)),
            (json!("10"), Some(1000)),
            (json!("10.5"), Some(1050)),
            (json!("10.50"), Some(1050)),
            (json!("10.500000"), Some(1050)),
            (json!(0.29), Some(29)),
            (json!("0.29"), Some(29)),
            (json!(1.1), Some(110)),
            (json!(0.07), Some(7)),
            (json!("  3.3 "), Some(330)),
            (json!(".5"), Some(50)),
            (json!("5."), Some(500)),
            (json!("+5"), Some(500)),
            (json!("-1.5"), Some(-150)),
            (json!(-2), Some(-200)),
            (json!("0"), Some(0)),
            (json!("0.00"), Some(0)),
            (json!("000123.40"), Some(12340)),
            (json!(1e2), Some(10000)),
            (json!("1.5e1"), Some(1500)),
            (json!("25E-1"), Some(250)),
            (json!("92233720368547758.07"), Some(i64::MAX)),
        ];
        for (value, fen) in cases {
            assert_eq!(yuan_to_fen(&value), fen, "{value}");
        }
    }

    #[test]
    fn yuan_rejects_what_is_not_an_exact_amount() {
        let cases = [
            json!(""),
            json!(" "),
            json!("."),
            json!("-"),
            json!("abc"),
            json!("1,000"),
            json!("1.2.3"),
            json!("¥10"),
            json!("10 元"),
            json!("NaN"),
            json!("inf"),
            json!("+-1"),
            json!("1e"),
            json!("0.001"),
            json!(0.001),
            json!("10.505"),
            json!("1e5000"),
            json!("92233720368547758.08"),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
            json!(null),
            json!(true),
            json!([1]),
            json!({"amount": 1}),
        ];
        for value in cases {
            assert_eq!(yuan_to_fen(&value), None, "{value}");
        }
    }

    #[test]
    fn gmt8_times_become_unix_seconds() {
        let cases = [
            ("1970-01-01 08:00:00", Some(0)),
            ("2015-01-01 00:00:00", Some(1_420_041_600)),
            ("2016-01-01 12:00:00", Some(1_451_620_800)),
            ("2024-02-29 23:59:59", Some(1_709_222_399)),
            ("2000-03-01 00:00:00", Some(951_840_000)),
            ("2038-01-19 11:14:08", Some(2_147_483_648)),
            ("1969-12-31 23:59:59", Some(-28_801)),
            (" 2015-01-01 00:00:00 ", Some(1_420_041_600)),
            ("2015-01-01T00:00:00", Some(1_420_041_600)),
            ("2015/1/1 0:00:00", Some(1_420_041_600)),
            ("2015-01-01 00:00", Some(1_420_041_600)),
            ("2015-01-01 00:00:00.999", Some(1_420_041_600)),
            ("2015-01-01", Some(1_420_041_600)),
            ("1420041600000", Some(1_420_041_600)),
            ("1420041600999", Some(1_420_041_600)),
            ("1420041600", Some(1_420_041_600)),
            ("0", Some(0)),
        ];
        for (text, unix) in cases {
            assert_eq!(gmt8_to_unix(text), unix, "{text}");
        }
    }

    #[test]
    fn gmt8_rejects_impossible_or_foreign_text() {
        let cases = [
            "",
            "demo",
            "2015-01-01 00:00:00, 1",
            "2023-02-29 00:00:00",
            "2100-02-29",
            "2015-13-01",
            "2015-00-01",
            "2015-04-31",
            "2015-01-00",
            "2015-01-01 24:00:00",
            "2015-01-01 00:60:00",
            "2015-01-01 00:00:61",
            "2015-01-01 00:00:00:00",
            "2015-01-01 00",
            "2015-01-01 00:00:00.x",
            "15-01-01",
            "2015-001-01",
            "2015-01-01-01",
            "２０１５-01-01",
            "1.5",
        ];
        for text in cases {
            assert_eq!(gmt8_to_unix(text), None, "{text}");
        }
    }

    #[test]
    fn every_day_for_five_centuries_is_consecutive() {
        let mut expected = days_from_civil(1800, 1, 1);
        for year in 1800..2300 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        expected,
                        "{year}-{month}-{day}"
                    );
                    expected += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn millis_are_always_millis() {
        assert_eq!(
            millis_to_unix(&json!(1_798_732_799_000i64)),
            Some(1_798_732_799)
        );
        assert_eq!(
            millis_to_unix(&json!(1_798_732_799_999i64)),
            Some(1_798_732_799)
        );
        assert_eq!(millis_to_unix(&json!(123_345)), Some(123));
        assert_eq!(millis_to_unix(&json!(-1)), Some(-1));
        assert_eq!(millis_to_unix(&json!(" 1000 ")), Some(1));
        assert_eq!(millis_to_unix(&json!(1.5e12)), Some(1_500_000_000));
        for bad in [json!(1.5), json!("x"), json!(null), json!([]), json!(true)] {
            assert_eq!(millis_to_unix(&bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_numbers_in_json_are_seconds_or_milliseconds() {
        assert_eq!(
            value_to_unix(&json!(1_420_041_600_000i64)),
            Some(1_420_041_600)
        );
        assert_eq!(value_to_unix(&json!(1_420_041_600)), Some(1_420_041_600));
        assert_eq!(value_to_unix(&json!(1.4200416e12)), Some(1_420_041_600));
        assert_eq!(
            value_to_unix(&json!(i64::MIN)),
            Some(i64::MIN.div_euclid(1000))
        );
        assert_eq!(
            value_to_unix(&json!("2015-01-01 00:00:00")),
            Some(1_420_041_600)
        );
        assert_eq!(value_to_unix(&json!(1.5)), None);
        assert_eq!(value_to_unix(&json!(null)), None);
        assert_eq!(value_to_unix(&json!({})), None);
    }
}
