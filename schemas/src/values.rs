//! Domain value types: parsed once at the edge, trusted everywhere inside.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value could not be parsed. The message names the field's rule and the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("currency must be three upper-case ISO 4217 letters, got {0:?}")]
    Currency(String),
    #[error("amount must be a non-negative integer of minor units, got {0}")]
    NegativeAmount(i64),
    #[error("cannot combine {left} with {right}: currencies differ")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount overflows: {0}")]
    Overflow(&'static str),
    #[error("draw number must be at least 1, got {0}")]
    DrawNumber(i64),
    #[error("validation number must be 1-40 characters of A-Z, 0-9 and '-', got {0:?}")]
    ValidationNumber(String),
    #[error("a check code is ten letters and digits as printed on the receipt, like K7QF2-M9XPA")]
    CheckCode,
    #[error("percentage must be between 0 and 100, got {0}")]
    Percentage(Decimal),
    #[error(
        "range partition must look like '{{raffle uuid}}/range:{{uuid}}' or '{{raffle uuid}}/alloc:{{uuid}}', got {0:?}"
    )]
    RangePartition(String),
}

/// ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, ValueError> {
        let bytes = code.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(ValueError::Currency(code.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// Money: a non-negative integer of minor units (cents for USD) and its currency. No floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, ValueError> {
        if amount_minor < 0 {
            return Err(ValueError::NegativeAmount(amount_minor));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// An amount as stored (minor units and an ISO code), checked like one that came in.
    pub fn of(amount_minor: i64, currency: &str) -> Result<Self, ValueError> {
        Money::new(amount_minor, Currency::parse(currency)?)
    }

    pub fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The currency's ISO code, borrowed from the amount.
    pub fn currency_code(&self) -> &str {
        self.currency.as_str()
    }

    pub fn checked_add(self, other: Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(ValueError::Overflow("money addition"))?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    /// `self - other`, refused when it would go below zero.
    pub fn checked_sub(self, other: Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        let amount_minor = self.amount_minor - other.amount_minor;
        Money::new(amount_minor, self.currency)
    }

    pub fn checked_mul(self, factor: i64) -> Result<Money, ValueError> {
        let amount_minor = self
            .amount_minor
            .checked_mul(factor)
            .ok_or(ValueError::Overflow("money multiplication"))?;
        Money::new(amount_minor, self.currency)
    }

    /// The share of each of `count` units, rounded up to the minor unit (a 5-for-$20 package
    /// costs $4 a ticket; 3 for $10 costs $3.34). Written without `amount + count - 1`, which
    /// wraps near `i64::MAX`. A count below 1 counts as 1.
    pub fn per_unit_rounded_up(self, count: i64) -> Money {
        let count = count.max(1);
        let amount_minor = self.amount_minor / count + i64::from(self.amount_minor % count != 0);
        Money {
            amount_minor,
            currency: self.currency,
        }
    }

    fn same_currency(self, other: Money) -> Result<(), ValueError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(ValueError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

/// Minor units as people read an amount: `1,234.56`, thousands grouped, two decimals (every
/// currency the platform sells in has two), a minus sign when negative. The one formatter of
/// amounts for reports, receipts and the command line.
pub fn amount_for_people(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", abs % 100)
}

/// Whether two secrets' bytes are equal, in a time that depends on their length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A draw number: a positive integer, unique within its raffle and inside its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct DrawNumber(i64);

impl DrawNumber {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        if value >= 1 {
            Ok(Self(value))
        } else {
            Err(ValueError::DrawNumber(value))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for DrawNumber {
    type Error = ValueError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DrawNumber> for i64 {
    fn from(n: DrawNumber) -> i64 {
        n.0
    }
}

impl fmt::Display for DrawNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A validation number printed on a receipt, e.g. `RSU001-2025-0001` or `VAL-9F8E7D6C5B4A`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ValidationNumber(String);

impl ValidationNumber {
    pub const LEN_MAX: usize = 40;

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        let ok = !value.is_empty()
            && value.len() <= Self::LEN_MAX
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValueError::ValidationNumber(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The one spelling of sequence `sequence` of the block `prefix`: at least four digits,
    /// zero-padded (`RSU001-2026-0001`), no other leading zeros.
    pub fn in_block(prefix: &str, sequence: i32) -> String {
        format!("{prefix}{sequence:04}")
    }

    /// The sequence of `value` in the block `prefix`, only when `value` is spelled the one way
    /// [`ValidationNumber::in_block`] spells it: `RSU001-2026-1` and `RSU001-2026-00001` are
    /// not other names for `RSU001-2026-0001`.
    pub fn sequence_in(value: &str, prefix: &str) -> Option<i32> {
        let digits = value.strip_prefix(prefix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sequence = digits.parse::<i32>().ok()?;
        (Self::in_block(prefix, sequence) == value).then_some(sequence)
    }
}

/// The secret on a buyer's receipt that a prize claim needs besides the (public) winning number
/// and the (guessable: RSU validation numbers are sequential) validation number. Ten
/// characters of Crockford base32, 50 random bits, shown as `K7QF2-M9XPA`; read back
/// forgivingly (any case, hyphens and spaces ignored, `O` as `0`, `I` and `L` as `1`). The
/// platform stores only [`CheckCode::hash`]; the code lives on the receipt and in the buyer's
/// e-mail.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckCode([u8; CheckCode::CHARS]);

impl CheckCode {
    pub const CHARS: usize = 10;
    const ALPHABET: &'static [u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    /// A code from 8 random bytes (the caller draws them from the operating system's CSPRNG);
    /// 50 of their 64 bits are used.
    pub fn from_random(bytes: [u8; 8]) -> Self {
        let mut bits = u64::from_le_bytes(bytes);
        let mut out = [0u8; Self::CHARS];
        for c in &mut out {
            *c = Self::ALPHABET[(bits & 31) as usize];
            bits >>= 5;
        }
        Self(out)
    }

    /// Reads a code as a person types it.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let mut out = [0u8; Self::CHARS];
        let mut n = 0;
        for c in input.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            if n == Self::CHARS || !c.is_ascii() || !Self::ALPHABET.contains(&(c as u8)) {
                return Err(ValueError::CheckCode);
            }
            out[n] = c as u8;
            n += 1;
        }
        if n == Self::CHARS {
            Ok(Self(out))
        } else {
            Err(ValueError::CheckCode)
        }
    }

    /// As printed: two groups of five.
    pub fn display(&self) -> String {
        let text = std::str::from_utf8(&self.0).unwrap_or("");
        format!("{}-{}", &text[..5], &text[5..])
    }

    /// Whether this code is the one whose hash was stored for the receipt of `validation_number`
    /// in `raffle_id`; compared in constant time, so the answer's timing says nothing of how
    /// much of the code was right.
    pub fn matches(&self, raffle_id: uuid::Uuid, validation_number: &str, stored: &[u8]) -> bool {
        constant_time_eq(&self.hash(raffle_id, validation_number), stored)
    }

    /// What is stored: SHA-256 over a domain tag, the raffle, the validation number and the
    /// code, so that equal codes of two receipts never hash alike.
    pub fn hash(&self, raffle_id: uuid::Uuid, validation_number: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"raffle-check-code/v1\0");
        h.update(raffle_id.as_bytes());
        h.update(validation_number.as_bytes());
        h.update(b"\0");
        h.update(self.0);
        h.finalize().into()
    }
}

/// Never shown in logs or debug output: the code is the buyer's secret.
impl fmt::Debug for CheckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckCode(…)")
    }
}

impl TryFrom<String> for ValidationNumber {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ValidationNumber> for String {
    fn from(v: ValidationNumber) -> String {
        v.0
    }
}

impl fmt::Display for ValidationNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A percentage between 0 and 100 inclusive, exact (decimal, never float).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Percentage(Decimal);

impl Percentage {
    pub fn new(value: Decimal) -> Result<Self, ValueError> {
        if value >= Decimal::ZERO && value <= Decimal::ONE_HUNDRED {
            Ok(Self(value))
        } else {
            Err(ValueError::Percentage(value))
        }
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Percentage {
    type Error = ValueError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Percentage> for Decimal {
    fn from(p: Percentage) -> Decimal {
        p.0
    }
}

/// Which number sequence inside a raffle: a range (or sub-range) row, or an RSU allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeRef {
    Range(Uuid),
    Allocation(Uuid),
}

/// The Kafka key of a sale: one consumer owns each sequence, so numbers are handed out
/// without locks or gaps. Text form: `{raffle}/range:{uuid}` or `{raffle}/alloc:{uuid}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RangePartition {
    pub raffle_id: Uuid,
    pub range: RangeRef,
}

impl RangePartition {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::RangePartition(text.to_owned());
        let (raffle, range) = text.split_once('/').ok_or_else(bad)?;
        let raffle_id = Uuid::parse_str(raffle).map_err(|_| bad())?;
        let (kind, id) = range.split_once(':').ok_or_else(bad)?;
        let id = Uuid::parse_str(id).map_err(|_| bad())?;
        let range = match kind {
            "range" => RangeRef::Range(id),
            "alloc" => RangeRef::Allocation(id),
            _ => return Err(bad()),
        };
        Ok(Self { raffle_id, range })
    }
}

impl fmt::Display for RangePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.range {
            RangeRef::Range(id) => write!(f, "{}/range:{}", self.raffle_id, id),
            RangeRef::Allocation(id) => write!(f, "{}/alloc:{}", self.raffle_id, id),
        }
    }
}

impl TryFrom<String> for RangePartition {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RangePartition> for String {
    fn from(rp: RangePartition) -> String {
        rp.to_string()
    }
}

impl FromStr for RangePartition {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_check_code_reads_back_as_a_person_types_it() {
        let code = CheckCode::from_random([7, 1, 2, 3, 4, 5, 6, 9]);
        let shown = code.display();
        assert_eq!(shown.len(), 11);
        assert_eq!(CheckCode::parse(&shown), Ok(code.clone()));
        assert_eq!(
            CheckCode::parse(&shown.to_lowercase().replace('-', " ")),
            Ok(code.clone())
        );
        assert_eq!(
            CheckCode::parse("o1l1I-00000"),
            CheckCode::parse("01111-00000")
        );
        for bad in [
            "",
            "K7QF2-M9XP",
            "K7QF2-M9XPAB",
            "K7QF2-M9XPU",
            "K7QF2\u{0}M9XPA",
        ] {
            assert!(CheckCode::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{code:?}").contains(&shown[..5]));
        let raffle = uuid::Uuid::nil();
        assert_ne!(code.hash(raffle, "VAL-1"), code.hash(raffle, "VAL-2"));
    }

    proptest! {
        #[test]
        fn every_code_parses_back(bytes in any::<[u8; 8]>()) {
            let code = CheckCode::from_random(bytes);
            prop_assert_eq!(CheckCode::parse(&code.display()), Ok(code));
        }
    }

    #[test]
    fn a_validation_number_has_one_spelling_in_its_block() {
        let prefix = "RSU001-2026-";
        assert_eq!(ValidationNumber::in_block(prefix, 1), "RSU001-2026-0001");
        assert_eq!(
            ValidationNumber::sequence_in("RSU001-2026-0001", prefix),
            Some(1)
        );
        assert_eq!(
            ValidationNumber::sequence_in("RSU001-2026-12345", prefix),
            Some(12345)
        );
        for other in [
            "RSU001-2026-1",
            "RSU001-2026-00001",
            "RSU001-2026-+001",
            "RSU001-2026-",
            "RSU002-2026-0001",
        ] {
            assert_eq!(
                ValidationNumber::sequence_in(other, prefix),
                None,
                "{other}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_sequence_reads_back_from_its_spelling(sequence in 0i32..i32::MAX) {
            let text = ValidationNumber::in_block("RSU007-2030-", sequence);
            prop_assert_eq!(ValidationNumber::sequence_in(&text, "RSU007-2030-"), Some(sequence));
        }
    }

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert_eq!(
            Currency::parse("USD").map(|c| c.to_string()),
            Ok("USD".into())
        );
        for bad in ["usd", "US", "USDD", "", "U$D"] {
            assert!(Currency::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn amounts_for_people_group_thousands() {
        assert_eq!(amount_for_people(0), "0.00");
        assert_eq!(amount_for_people(4_036_000), "40,360.00");
        assert_eq!(amount_for_people(-123_456_789), "-1,234,567.89");
        assert_eq!(amount_for_people(99_999), "999.99");
        assert_eq!(amount_for_people(i64::MIN), "-92,233,720,368,547,758.08");
    }

    #[test]
    fn money_refuses_negative_and_mixed_currencies() {
        let usd = Currency::parse("USD").unwrap();
        let cad = Currency::parse("CAD").unwrap();
        assert_eq!(Money::new(-1, usd), Err(ValueError::NegativeAmount(-1)));
        let a = Money::new(500, usd).unwrap();
        let b = Money::new(300, cad).unwrap();
        assert!(matches!(
            a.checked_add(b),
            Err(ValueError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            Money::new(300, usd).unwrap().checked_sub(a),
            Err(ValueError::NegativeAmount(-200))
        );
    }

    #[test]
    fn draw_number_starts_at_one() {
        assert!(DrawNumber::new(0).is_err());
        assert_eq!(DrawNumber::new(1).map(DrawNumber::get), Ok(1));
    }

    #[test]
    fn validation_number_rules() {
        assert!(ValidationNumber::parse("RSU001-2025-0001").is_ok());
        assert!(ValidationNumber::parse("VAL-9F8E7D6C5B4A").is_ok());
        assert!(ValidationNumber::parse("val-1").is_err());
        assert!(ValidationNumber::parse(&"A".repeat(41)).is_err());
    }

    #[test]
    fn percentage_bounds() {
        assert!(Percentage::new(Decimal::new(455, 1)).is_ok());
        assert!(Percentage::new(Decimal::new(-1, 0)).is_err());
        assert!(Percentage::new(Decimal::new(1001, 1)).is_err());
    }

    #[test]
    fn range_partition_refuses_garbage() {
        for bad in [
            "",
            "x/y",
            "not-a-uuid/range:also-not",
            "00000000-0000-0000-0000-000000000000/zone:00000000-0000-0000-0000-000000000000",
        ] {
            assert!(
                RangePartition::parse(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    proptest! {
        #[test]
        fn range_partition_round_trips(a in any::<u128>(), b in any::<u128>(), alloc in any::<bool>()) {
            let id = Uuid::from_u128(b);
            let rp = RangePartition {
                raffle_id: Uuid::from_u128(a),
                range: if alloc { RangeRef::Allocation(id) } else { RangeRef::Range(id) },
            };
            prop_assert_eq!(RangePartition::parse(&rp.to_string()), Ok(rp));
        }

        #[test]
        fn money_addition_is_exact(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2) {
            let usd = Currency::parse("USD").unwrap();
            let sum = Money::new(a, usd).unwrap().checked_add(Money::new(b, usd).unwrap()).unwrap();
            prop_assert_eq!(sum.amount_minor(), a + b);
            prop_assert_eq!(sum.checked_sub(Money::new(b, usd).unwrap()).unwrap().amount_minor(), a);
        }

        #[test]
        fn a_unit_share_rounded_up_covers_the_whole(amount in 0i64..=i64::MAX, count in 1i64..10_000) {
            let each = Money::of(amount, "USD").unwrap().per_unit_rounded_up(count).amount_minor();
            // count shares of `each` reach the amount, and one minor unit less would not.
            prop_assert!(i128::from(each) * i128::from(count) >= i128::from(amount));
            prop_assert!(each == 0 || i128::from(each - 1) * i128::from(count) < i128::from(amount));
        }
    }
}
