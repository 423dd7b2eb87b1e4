//! `sms`: text messages through the aspsms.com JSON API
//! (<https://json.aspsms.com/>): `SendSimpleTextSMS` to send,
//! `InquireDeliveryNotifications` for the delivery status, `CheckCredits`
//! for the balance. Every call is a JSON POST carrying `UserName` (the user
//! key) and `Password`; the answer carries `StatusCode` (`"1"` = OK) and
//! `StatusInfo`.

use super::{http, OutboundMessage, TransportError};
use crate::store::transports::TransportRecord;
use mft_config::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The documented endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://json.aspsms.com/";
/// Longest text sent (aspsms concatenates up to 10 parts; 1530 GSM-7
/// characters).
const MAX_TEXT: usize = 1530;

/// Stored settings (no secret: the password is the provider's secret).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The aspsms user key.
    pub userkey: String,
    /// Sender: a phone number (E.164) or up to 11 letters and digits.
    pub originator: String,
    /// API base URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Warn below this balance.
    #[serde(default)]
    pub credit_threshold: Option<f64>,
    /// The provider that carries the low-credit warning.
    #[serde(default)]
    pub credit_warn_via: Option<String>,
    /// Its recipient.
    #[serde(default)]
    pub credit_warn_to: Option<String>,
    /// At most this many messages (`"10/m"`; see `super::rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

fn invalid(m: impl Into<String>) -> TransportError {
    TransportError::Invalid(m.into())
}

/// Checks settings given as JSON; returns them normalized.
pub fn check_settings(value: serde_json::Value) -> Result<serde_json::Value, TransportError> {
    let mut s: SmsSettings =
        serde_json::from_value(value).map_err(|e| invalid(format!("sms settings: {e}")))?;
    if s.userkey.is_empty() || !s.userkey.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid("userkey: the aspsms user key (letters and digits)"));
    }
    let numeric = match normalize_address(&s.originator) {
        Ok(number) => {
            s.originator = number;
            true
        }
        Err(_) => false,
    };
    let alpha = !s.originator.is_empty()
        && s.originator.len() <= 11
        && s.originator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ');
    if !numeric && !alpha {
        return Err(invalid(
            "originator: a phone number (+41...) or up to 11 letters and digits",
        ));
    }
    s.endpoint = http::check_endpoint(&s.endpoint)?;
    super::check_credit_settings(s.credit_threshold, &s.credit_warn_via, &s.credit_warn_to)?;
    super::rate::check(s.rate.as_deref())?;
    serde_json::to_value(&s).map_err(|e| invalid(format!("sms settings: {e}")))
}

/// Characters people write inside phone numbers to group digits; dropped.
const SEPARATORS: &[char] = &[' ', '-', '.', '/', '(', ')'];

/// `to` as aspsms takes a recipient (`Recipients` of SendSimpleTextSMS,
/// documented as an MSISDN in international format, `+41790000000`, which
/// aspsms's other interfaces also accept as `0041790000000`): `+` and the
/// country code and number, 6 to 15 digits (ITU-T E.164), the first not
/// `0`. `00` before the country code becomes `+`; spaces, `-`, `.`, `/` and
/// parentheses between digits are dropped. A national number (`079...`)
/// has no country code and is refused, as is a `:` (the gateway appends
/// the transaction reference itself).
pub fn normalize_address(to: &str) -> Result<String, String> {
    const FORM: &str = "a phone number in international format, +41791234567 or 0041791234567";
    let trimmed = to.trim();
    if trimmed.contains(':') {
        return Err(format!(
            "{FORM}, without \":\" (the gateway adds the transaction reference)"
        ));
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !SEPARATORS.contains(c))
        .collect();
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else if compact.starts_with('0') {
        return Err(format!(
            "{FORM}: {trimmed:?} is a national number (no country code)"
        ));
    } else {
        return Err(format!("{FORM}: {trimmed:?} starts with neither + nor 00"));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{FORM}: {trimmed:?} has other characters than digits"
        ));
    }
    if digits.starts_with('0') {
        return Err(format!("{FORM}: no country code starts with 0"));
    }
    if !(6..=15).contains(&digits.len()) {
        return Err(format!(
            "{FORM}: {} digits after the +, not 6 to 15",
            digits.len()
        ));
    }
    Ok(format!("+{digits}"))
}

fn settings(record: &TransportRecord) -> Result<SmsSettings, TransportError> {
    serde_json::from_value(record.settings.clone())
        .map_err(|e| invalid(format!("stored sms settings: {e}")))
}

fn password(secret: Option<&Secret>) -> Result<&str, TransportError> {
    secret
        .map(Secret::expose)
        .ok_or_else(|| invalid("no password stored"))
}

/// The answer's common part.
#[derive(Deserialize)]
struct Status {
    #[serde(rename = "StatusCode", default)]
    code: serde_json::Value,
    #[serde(rename = "StatusInfo", default)]
    info: Option<String>,
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn call(
    s: &SmsSettings,
    method: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, TransportError> {
    let url = format!("{}{method}", s.endpoint);
    let response = http::client()?
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| TransportError::Send(format!("aspsms {method}: {}", http::error_text(e))))?;
    let status = response.status();
    let value: serde_json::Value = response.json().await.map_err(|e| {
        TransportError::Send(format!(
            "aspsms {method}: HTTP {status}, not JSON: {}",
            http::error_text(e)
        ))
    })?;
    let st: Status = serde_json::from_value(value.clone())
        .map_err(|e| TransportError::Send(format!("aspsms {method}: unexpected answer: {e}")))?;
    let code = text_of(&st.code);
    // Some methods answer success with another code but StatusInfo "OK".
    if code != "1" && st.info.as_deref() != Some("OK") {
        return Err(TransportError::Send(format!(
            "aspsms {method}: StatusCode {code}: {}",
            st.info.unwrap_or_default()
        )));
    }
    Ok(value)
}

/// The text sent for a message: subject and text, one per line.
fn text_for(message: &OutboundMessage<'_>) -> String {
    if message.subject.is_empty() {
        message.text.to_string()
    } else {
        format!("{}\n{}", message.subject, message.text)
    }
}

/// Sends `message`; the answer names the transaction reference per
/// recipient, for `transports delivery`.
pub async fn send(
    record: &TransportRecord,
    secret: Option<&Secret>,
    message: &OutboundMessage<'_>,
) -> Result<String, TransportError> {
    let s = settings(record)?;
    let password = password(secret)?;
    let text = text_for(message);
    if text.chars().count() > MAX_TEXT {
        return Err(invalid(format!("text: at most {MAX_TEXT} characters")));
    }
    if message.to.is_empty() {
        return Err(invalid("to: at least one recipient"));
    }
    let mut recipients = Vec::with_capacity(message.to.len());
    let mut references = Vec::with_capacity(message.to.len());
    for to in message.to {
        let to = normalize_address(to).map_err(|e| invalid(format!("to {to:?}: {e}")))?;
        // The documented "number:TransactionReferenceNumber" form, so the
        // delivery status can be asked for later.
        let reference = reference();
        recipients.push(format!("{to}:{reference}"));
        references.push(reference);
    }
    let body = json!({
        "UserName": s.userkey,
        "Password": password,
        "Originator": s.originator,
        "Recipients": recipients,
        "MessageText": text,
    });
    let answer = call(&s, "SendSimpleTextSMS", body).await?;
    let info = answer
        .get("StatusInfo")
        .map(text_of)
        .unwrap_or_else(|| "OK".into());
    Ok(format!("{info}; reference {}", references.join(",")))
}

/// A transaction reference: 16 decimal digits.
fn reference() -> String {
    let mut b = [0u8; 8];
    // getrandom only fails without an OS source; the time is good enough then.
    if getrandom::fill(&mut b).is_err() {
        b = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes()[..8]
            .try_into()
            .unwrap_or_default();
    }
    format!("{:016}", u64::from_le_bytes(b) % 10_000_000_000_000_000)
}

/// The balance.
pub async fn credits(
    record: &TransportRecord,
    secret: Option<&Secret>,
) -> Result<String, TransportError> {
    let s = settings(record)?;
    let body = json!({"UserName": s.userkey, "Password": password(secret)?});
    let answer = call(&s, "CheckCredits", body).await?;
    answer
        .get("Credits")
        .map(text_of)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TransportError::Send("aspsms CheckCredits: no Credits in the answer".into()))
}

/// The delivery status of the messages with these references:
/// `(reference, status description)`.
pub async fn delivery(
    record: &TransportRecord,
    secret: Option<&Secret>,
    references: &[String],
) -> Result<Vec<(String, String)>, TransportError> {
    let s = settings(record)?;
    if references.is_empty()
        || references
            .iter()
            .any(|r| r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(invalid("references: one or more, letters and digits"));
    }
    let body = json!({
        "UserName": s.userkey,
        "Password": password(secret)?,
        "TransactionReferenceNumbers": references.join(";"),
    });
    let answer = call(&s, "InquireDeliveryNotifications", body).await?;
    let list = answer
        .get("DeliveryNotifications")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .map(|n| {
            let field = |k: &str| n.get(k).map(text_of).unwrap_or_default();
            let description = field("DeliveryStatusDescription");
            (
                field("TransactionReferenceNumber"),
                if description.is_empty() {
                    format!("status {}", field("DeliveryStatus"))
                } else {
                    description
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::normalize_address;

    #[test]
    fn recipients_are_normalized_to_the_international_form() {
        for (given, want) in [
            ("+41791234567", "+41791234567"),
            ("0041791234567", "+41791234567"),
            ("+41 79 123 45 67", "+41791234567"),
            (" +41 (0)79-123.45/67 ", "+410791234567"),
            ("+1 (415) 555-0100", "+14155550100"),
        ] {
            assert_eq!(normalize_address(given).as_deref(), Ok(want), "{given}");
        }
        for (bad, why) in [
            ("0791234567", "national number"),
            ("41791234567", "neither + nor 00"),
            ("+41 79 123 45 67:4711", "transaction reference"),
            ("+4179123456x", "other characters"),
            ("+0791234567", "no country code starts with 0"),
            ("+12345", "not 6 to 15"),
            ("+1234567890123456", "not 6 to 15"),
            ("", "neither + nor 00"),
            ("+", "not 6 to 15"),
        ] {
            let err = normalize_address(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
