//! Values between the guest's `db-value` / `parameter-value` and PostgreSQL's
//! binary wire format.
//!
//! Parameters are encoded for the type the server inferred for each `$n`, so
//! a lossless widening (an `int32` for an `int8` column) just works, and a
//! mismatch fails with a message naming the parameter and both types.
//! Result columns are decoded by their PostgreSQL type; a type this
//! interface has no variant for arrives as `unsupported` with its raw bytes.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres_protocol::types::{self as wire, RangeBound};
use rust_decimal::Decimal;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::pg::{DbDataType, DbValue, Interval, ParameterValue, RangeBoundKind};

type BoxError = Box<dyn StdError + Sync + Send>;

/// A guest parameter, encodable as whatever type the statement expects.
#[derive(Debug)]
pub struct Param(pub ParameterValue);

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use ParameterValue as P;
        let mismatch =
            || -> BoxError { format!("cannot send {} as {ty}", variant_name(&self.0)).into() };
        match (&self.0, ty) {
            (P::DbNull, _) => Ok(IsNull::Yes),
            (P::Boolean(v), &Type::BOOL) => v.to_sql(ty, out),
            (P::Int8(v), &Type::CHAR) => v.to_sql(ty, out),
            (P::Int8(v), _) => integer(i64::from(*v), ty, out).ok_or_else(mismatch)?,
            (P::Int16(v), _) => integer(i64::from(*v), ty, out).ok_or_else(mismatch)?,
            (P::Int32(v), _) => integer(i64::from(*v), ty, out).ok_or_else(mismatch)?,
            (P::Int64(v), _) => integer(*v, ty, out).ok_or_else(mismatch)?,
            (P::Floating32(v), &Type::FLOAT4) => v.to_sql(ty, out),
            (P::Floating32(v), &Type::FLOAT8) => f64::from(*v).to_sql(ty, out),
            (P::Floating64(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (P::Str(v), _) if is_text(ty) => v.to_sql(ty, out),
            (P::Binary(v), &Type::BYTEA) => v.to_sql(ty, out),
            (P::Date(d), &Type::DATE) => date(*d)?.to_sql(ty, out),
            (P::Time(t), &Type::TIME) => time(*t)?.to_sql(ty, out),
            (P::Datetime(dt), &Type::TIMESTAMP) => datetime(*dt)?.to_sql(ty, out),
            (P::Datetime(dt), &Type::TIMESTAMPTZ) => datetime(*dt)?.and_utc().to_sql(ty, out),
            (P::Timestamp(secs), &Type::TIMESTAMPTZ) => unix(*secs)?.to_sql(ty, out),
            (P::Timestamp(secs), &Type::TIMESTAMP) => unix(*secs)?.naive_utc().to_sql(ty, out),
            (P::Uuid(v), &Type::UUID) => uuid::Uuid::parse_str(v)?.to_sql(ty, out),
            (P::Jsonb(v), &Type::JSONB | &Type::JSON) => {
                serde_json::from_slice::<serde_json::Value>(v)?.to_sql(ty, out)
            }
            (P::Decimal(v), &Type::NUMERIC) => v.parse::<Decimal>()?.to_sql(ty, out),
            (P::RangeInt32((lower, upper)), &Type::INT4_RANGE) => {
                encode_range(*lower, *upper, &Type::INT4, out)
            }
            (P::RangeInt64((lower, upper)), &Type::INT8_RANGE) => {
                encode_range(*lower, *upper, &Type::INT8, out)
            }
            (P::RangeDecimal((lower, upper)), &Type::NUM_RANGE) => {
                let parse = |bound: &Bound<String>| -> Result<Bound<Decimal>, BoxError> {
                    bound
                        .as_ref()
                        .map(|(v, kind)| Ok((v.parse::<Decimal>()?, *kind)))
                        .transpose()
                };
                encode_range(parse(lower)?, parse(upper)?, &Type::NUMERIC, out)
            }
            (P::ArrayInt32(v), &Type::INT4_ARRAY) => v.to_sql(ty, out),
            (P::ArrayInt64(v), &Type::INT8_ARRAY) => v.to_sql(ty, out),
            (P::ArrayDecimal(v), &Type::NUMERIC_ARRAY) => v
                .iter()
                .map(|d| d.as_deref().map(str::parse::<Decimal>).transpose())
                .collect::<Result<Vec<_>, _>>()?
                .to_sql(ty, out),
            (P::ArrayStr(v), ty) if array_of_text(ty) => v.to_sql(ty, out),
            (P::Interval(v), &Type::INTERVAL) => {
                out.put_i64(v.micros);
                out.put_i32(v.days);
                out.put_i32(v.months);
                Ok(IsNull::No)
            }
            _ => Err(mismatch()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, which knows which variant it holds.
        true
    }

    to_sql_checked!();
}

/// Encodes an integer for whichever integer (or float) column it fits.
fn integer(value: i64, ty: &Type, out: &mut BytesMut) -> Option<Result<IsNull, BoxError>> {
    Some(match *ty {
        Type::INT2 => i16::try_from(value).ok()?.to_sql(ty, out),
        Type::INT4 => i32::try_from(value).ok()?.to_sql(ty, out),
        Type::INT8 => value.to_sql(ty, out),
        Type::NUMERIC => Decimal::from(value).to_sql(ty, out),
        _ => return None,
    })
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || matches!(ty.kind(), Kind::Enum(_))
}

fn array_of_text(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Array(member) if is_text(member))
}

fn date((year, month, day): (i32, u8, u8)) -> Result<NaiveDate, BoxError> {
    NaiveDate::from_ymd_opt(year, month.into(), day.into())
        .ok_or_else(|| format!("{year:04}-{month:02}-{day:02} is not a date").into())
}

fn time((hour, minute, second, nanos): (u8, u8, u8, u32)) -> Result<NaiveTime, BoxError> {
    NaiveTime::from_hms_nano_opt(hour.into(), minute.into(), second.into(), nanos)
        .ok_or_else(|| format!("{hour:02}:{minute:02}:{second:02}.{nanos:09} is not a time").into())
}

fn datetime(
    (y, mo, d, h, mi, s, ns): (i32, u8, u8, u8, u8, u8, u32),
) -> Result<NaiveDateTime, BoxError> {
    Ok(date((y, mo, d))?.and_time(time((h, mi, s, ns))?))
}

fn unix(seconds: i64) -> Result<chrono::DateTime<chrono::Utc>, BoxError> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| format!("{seconds} is out of range for a timestamp").into())
}

type Bound<T> = Option<(T, RangeBoundKind)>;

/// Encodes a range of `element` values in PostgreSQL's binary range format.
fn encode_range<U: ToSql>(
    lower: Bound<U>,
    upper: Bound<U>,
    element: &Type,
    out: &mut BytesMut,
) -> Result<IsNull, BoxError> {
    let bound = |bound: Bound<U>| {
        move |buf: &mut BytesMut| -> Result<RangeBound<postgres_protocol::IsNull>, BoxError> {
            // `range_to_sql` speaks the protocol crate's `IsNull`; bounds
            // here are never null.
            let encode = |value: U, buf: &mut BytesMut| {
                value
                    .to_sql(element, buf)
                    .map(|_| postgres_protocol::IsNull::No)
            };
            Ok(match bound {
                None => RangeBound::Unbounded,
                Some((value, RangeBoundKind::Inclusive)) => {
                    RangeBound::Inclusive(encode(value, buf)?)
                }
                Some((value, RangeBoundKind::Exclusive)) => {
                    RangeBound::Exclusive(encode(value, buf)?)
                }
            })
        }
    };
    wire::range_to_sql(bound(lower), bound(upper), out)?;
    Ok(IsNull::No)
}

/// Decodes a range of `element` values. The interface has no empty range:
/// one arrives as `(zero, zero)` with both bounds exclusive, which is empty
/// and which PostgreSQL turns back into `empty`.
fn decode_range<'a, U: FromSql<'a> + Clone>(
    raw: &'a [u8],
    element: &Type,
    zero: U,
) -> Result<(Bound<U>, Bound<U>), BoxError> {
    let bound = |bound: RangeBound<Option<&'a [u8]>>| -> Result<Bound<U>, BoxError> {
        let (bytes, kind) = match bound {
            RangeBound::Unbounded => return Ok(None),
            RangeBound::Inclusive(bytes) => (bytes, RangeBoundKind::Inclusive),
            RangeBound::Exclusive(bytes) => (bytes, RangeBoundKind::Exclusive),
        };
        let bytes = bytes.ok_or("a range bound is null")?;
        Ok(Some((U::from_sql(element, bytes)?, kind)))
    };
    match wire::range_from_sql(raw)? {
        wire::Range::Empty => Ok((
            Some((zero.clone(), RangeBoundKind::Exclusive)),
            Some((zero, RangeBoundKind::Exclusive)),
        )),
        wire::Range::Nonempty(lower, upper) => Ok((bound(lower)?, bound(upper)?)),
    }
}

fn variant_name(value: &ParameterValue) -> &'static str {
    use ParameterValue as P;
    match value {
        P::Boolean(_) => "boolean",
        P::Int8(_) => "int8",
        P::Int16(_) => "int16",
        P::Int32(_) => "int32",
        P::Int64(_) => "int64",
        P::Floating32(_) => "floating32",
        P::Floating64(_) => "floating64",
        P::Str(_) => "str",
        P::Binary(_) => "binary",
        P::Date(_) => "date",
        P::Time(_) => "time",
        P::Datetime(_) => "datetime",
        P::Timestamp(_) => "timestamp",
        P::Uuid(_) => "uuid",
        P::Jsonb(_) => "jsonb",
        P::Decimal(_) => "decimal",
        P::RangeInt32(_) => "range-int32",
        P::RangeInt64(_) => "range-int64",
        P::RangeDecimal(_) => "range-decimal",
        P::ArrayInt32(_) => "array-int32",
        P::ArrayInt64(_) => "array-int64",
        P::ArrayDecimal(_) => "array-decimal",
        P::ArrayStr(_) => "array-str",
        P::Interval(_) => "interval",
        P::DbNull => "db-null",
    }
}

/// The interface's name for a column of PostgreSQL type `ty`.
pub fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB | Type::JSON => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::INTERVAL => DbDataType::Interval,
        ref ty if is_text(ty) => DbDataType::Str,
        ref ty if array_of_text(ty) => DbDataType::ArrayStr,
        ref ty => DbDataType::Other(ty.name().to_owned()),
    }
}

/// One result cell, decoded by its column's type.
pub struct Cell(pub DbValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match data_type(ty) {
            DbDataType::Boolean => DbValue::Boolean(bool::from_sql(ty, raw)?),
            DbDataType::Int8 => DbValue::Int8(i8::from_sql(ty, raw)?),
            DbDataType::Int16 => DbValue::Int16(i16::from_sql(ty, raw)?),
            DbDataType::Int32 => DbValue::Int32(i32::from_sql(ty, raw)?),
            DbDataType::Int64 => DbValue::Int64(i64::from_sql(ty, raw)?),
            DbDataType::Floating32 => DbValue::Floating32(f32::from_sql(ty, raw)?),
            DbDataType::Floating64 => DbValue::Floating64(f64::from_sql(ty, raw)?),
            DbDataType::Str => DbValue::Str(String::from_sql(ty, raw)?),
            DbDataType::Binary => DbValue::Binary(Vec::<u8>::from_sql(ty, raw)?),
            DbDataType::Date => {
                let d = NaiveDate::from_sql(ty, raw)?;
                DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
            }
            DbDataType::Time => {
                let t = NaiveTime::from_sql(ty, raw)?;
                DbValue::Time((
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                    t.nanosecond(),
                ))
            }
            DbDataType::Datetime => {
                let dt = match *ty {
                    Type::TIMESTAMPTZ => {
                        chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?.naive_utc()
                    }
                    _ => NaiveDateTime::from_sql(ty, raw)?,
                };
                DbValue::Datetime((
                    dt.year(),
                    dt.month() as u8,
                    dt.day() as u8,
                    dt.hour() as u8,
                    dt.minute() as u8,
                    dt.second() as u8,
                    dt.nanosecond(),
                ))
            }
            DbDataType::Uuid => DbValue::Uuid(uuid::Uuid::from_sql(ty, raw)?.to_string()),
            DbDataType::Jsonb => {
                let json = serde_json::Value::from_sql(ty, raw)?;
                DbValue::Jsonb(serde_json::to_vec(&json)?)
            }
            DbDataType::Decimal => DbValue::Decimal(Decimal::from_sql(ty, raw)?.to_string()),
            DbDataType::RangeInt32 => DbValue::RangeInt32(decode_range(raw, &Type::INT4, 0)?),
            DbDataType::RangeInt64 => DbValue::RangeInt64(decode_range(raw, &Type::INT8, 0)?),
            DbDataType::RangeDecimal => {
                let (lower, upper) = decode_range(raw, &Type::NUMERIC, Decimal::ZERO)?;
                let text = |bound: Bound<Decimal>| bound.map(|(v, kind)| (v.to_string(), kind));
                DbValue::RangeDecimal((text(lower), text(upper)))
            }
            DbDataType::ArrayInt32 => DbValue::ArrayInt32(Vec::from_sql(ty, raw)?),
            DbDataType::ArrayInt64 => DbValue::ArrayInt64(Vec::from_sql(ty, raw)?),
            DbDataType::ArrayDecimal => DbValue::ArrayDecimal(
                Vec::<Option<Decimal>>::from_sql(ty, raw)?
                    .into_iter()
                    .map(|d| d.map(|d| d.to_string()))
                    .collect(),
            ),
            DbDataType::ArrayStr => DbValue::ArrayStr(Vec::from_sql(ty, raw)?),
            DbDataType::Interval => {
                let bytes: [u8; 16] = raw.try_into().map_err(|_| "an interval is 16 bytes")?;
                DbValue::Interval(Interval {
                    micros: i64::from_be_bytes(bytes[0..8].try_into()?),
                    days: i32::from_be_bytes(bytes[8..12].try_into()?),
                    months: i32::from_be_bytes(bytes[12..16].try_into()?),
                })
            }
            // Columns never report `timestamp` (that variant is for
            // parameters given as Unix seconds): timestamps arrive as `datetime`.
            DbDataType::Other(_) | DbDataType::Timestamp => DbValue::Unsupported(raw.to_vec()),
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(DbValue::DbNull))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Decodes every cell of `row`.
pub fn row(row: &tokio_postgres::Row) -> Result<Vec<DbValue>, tokio_postgres::Error> {
    (0..row.len())
        .map(|i| row.try_get::<_, Cell>(i).map(|cell| cell.0))
        .collect()
}
