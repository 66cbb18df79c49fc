//! AWS CloudTrail: one record per payload. Ingest splits the `{"Records": [...]}` envelope of
//! CloudTrail log files into records; an envelope that reaches the normalizer is
//! `unsupported_event`. Category and type tables live in `normalize/mappings/cloudtrail.toml`.
//! IAM names are case-sensitive and kept as they are.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FAILURE, Parsed, SUCCESS, UNKNOWN, rfc3339_time};
use crate::json::{self, copy, set};
use crate::{Reject, canonical};

/// `normalize/mappings/cloudtrail.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    default_category: Vec<String>,
    categories: BTreeMap<String, Vec<String>>,
    default_type: Vec<String>,
    types: Vec<TypeRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeRule {
    prefixes: Vec<String>,
    #[serde(rename = "type")]
    ty: Vec<String>,
}

fn mapping() -> &'static Mapping {
    static MAPPING: OnceLock<Mapping> = OnceLock::new();
    MAPPING.get_or_init(|| {
        // Covered by a unit test; a failure here means the build shipped a broken file.
        toml::from_str(include_str!("../../mappings/cloudtrail.toml"))
            .unwrap_or_else(|e| panic!("mappings/cloudtrail.toml: {e}"))
    })
}

/// Parses one CloudTrail record.
pub(crate) fn parse(r: &Value) -> Result<Parsed, Reject> {
    if r.get("Records").is_some_and(Value::is_array) {
        return Err(Reject::new(
            "unsupported_event",
            "payload is a CloudTrail {\"Records\": [...]} envelope; ingest must send one record per message",
        ));
    }
    let (Some(source), Some(name)) = (
        json::get_str(r, "eventSource"),
        json::get_str(r, "eventName"),
    ) else {
        return Err(Reject::new(
            "unsupported_event",
            "record has no eventSource and eventName (not a CloudTrail record)",
        ));
    };
    let timestamp = rfc3339_time(r, "eventTime")?;
    let m = mapping();
    let console_login = name == "ConsoleLogin";

    let mut e = Map::new();
    let category = if console_login {
        vec!["authentication".to_owned()]
    } else {
        m.categories
            .get(source)
            .unwrap_or(&m.default_category)
            .clone()
    };
    set(&mut e, "event.category", category);
    set(&mut e, "event.type", event_type(m, name, console_login, r));
    set(&mut e, "event.action", name);
    set(&mut e, "event.provider", source);
    set(&mut e, "event.outcome", outcome(r, console_login));
    set(&mut e, "event.dataset", "aws.cloudtrail");
    copy(&mut e, "event.id", r, "eventID");
    copy(&mut e, "aws.cloudtrail.event_type", r, "eventType");
    copy(&mut e, "aws.cloudtrail.error_code", r, "errorCode");
    copy(&mut e, "aws.cloudtrail.error_message", r, "errorMessage");
    set(&mut e, "cloud.provider", "aws");
    copy(&mut e, "cloud.region", r, "awsRegion");
    match json::present(r, "recipientAccountId") {
        Some(_) => copy(&mut e, "cloud.account.id", r, "recipientAccountId"),
        None => copy(&mut e, "cloud.account.id", r, "userIdentity.accountId"),
    }
    copy(&mut e, "user_agent.original", r, "userAgent");

    if let Some(addr) = json::get_str(r, "sourceIPAddress") {
        set(&mut e, "source.address", addr);
        if canonical::canonical_ip(addr).is_some() {
            set(&mut e, "source.ip", addr);
        } else if !addr.contains(char::is_whitespace) {
            // An AWS service (`ec2.amazonaws.com`) acting on the caller's behalf.
            set(&mut e, "source.domain", addr);
        }
    }

    copy(
        &mut e,
        "aws.cloudtrail.user_identity.type",
        r,
        "userIdentity.type",
    );
    copy(
        &mut e,
        "aws.cloudtrail.user_identity.arn",
        r,
        "userIdentity.arn",
    );
    copy(
        &mut e,
        "aws.cloudtrail.user_identity.access_key_id",
        r,
        "userIdentity.accessKeyId",
    );
    copy(
        &mut e,
        "aws.cloudtrail.user_identity.user_name",
        r,
        "userIdentity.userName",
    );
    copy(&mut e, "user.id", r, "userIdentity.principalId");
    if let Some(user) = user_name(r) {
        set(&mut e, "user.name", user);
    }
    if source == "iam.amazonaws.com" {
        copy(&mut e, "user.target.name", r, "requestParameters.userName");
    }
    if let Some(mfa) = mfa(r, console_login) {
        set(&mut e, "aws.cloudtrail.mfa_authenticated", mfa);
    }
    Ok(Parsed::new(e, timestamp, false))
}

/// CloudTrail `eventID`.
pub(crate) fn source_id(r: &Value) -> Option<String> {
    json::get_str(r, "eventID").map(str::to_owned)
}

/// `"root"` for the root user; else `userName`; else the last path part of the ARN
/// (`.../user/path/alice` → `alice`, `.../assumed-role/Role/session` → `session`).
fn user_name(r: &Value) -> Option<String> {
    if json::get_str(r, "userIdentity.type") == Some("Root") {
        return Some("root".to_owned());
    }
    if let Some(name) = json::get_str(r, "userIdentity.userName") {
        return Some(name.to_owned());
    }
    let arn = json::get_str(r, "userIdentity.arn")?;
    let resource = arn.splitn(6, ':').nth(5)?;
    let (_, last) = resource.rsplit_once('/')?;
    (!last.is_empty()).then(|| last.to_owned())
}

fn outcome(r: &Value, console_login: bool) -> &'static str {
    if console_login {
        return match json::get_str(r, "responseElements.ConsoleLogin") {
            Some("Success") => SUCCESS,
            Some("Failure") => FAILURE,
            _ if json::present(r, "errorMessage").is_some() => FAILURE,
            _ => UNKNOWN,
        };
    }
    if json::present(r, "errorCode").is_some() || json::present(r, "errorMessage").is_some() {
        FAILURE
    } else {
        SUCCESS
    }
}

fn event_type(m: &Mapping, name: &str, console_login: bool, r: &Value) -> Vec<String> {
    if console_login {
        return vec!["start".to_owned()];
    }
    let word_prefix = |p: &str| {
        name.strip_prefix(p).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase())
        })
    };
    if let Some(rule) = m
        .types
        .iter()
        .find(|t| t.prefixes.iter().any(|p| word_prefix(p)))
    {
        return rule.ty.clone();
    }
    if r.get("readOnly") == Some(&Value::Bool(true)) {
        return vec!["access".to_owned()];
    }
    m.default_type.clone()
}

/// ConsoleLogin: `additionalEventData.MFAUsed` `Yes`/`No`; other events: the session's
/// `mfaAuthenticated` `"true"`/`"false"`.
fn mfa(r: &Value, console_login: bool) -> Option<bool> {
    let (path, yes, no) = if console_login {
        ("additionalEventData.MFAUsed", "Yes", "No")
    } else {
        (
            "userIdentity.sessionContext.attributes.mfaAuthenticated",
            "true",
            "false",
        )
    };
    match json::get_str(r, path)? {
        v if v == yes => Some(true),
        v if v == no => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping_loads() {
        let m = mapping();
        assert_eq!(m.categories["iam.amazonaws.com"], ["iam"]);
        assert_eq!(m.default_category, ["configuration"]);
    }

    #[test]
    fn types_match_whole_words() {
        let m = mapping();
        let r = json!({});
        assert_eq!(event_type(m, "GetObject", false, &r), ["access"]);
        assert_eq!(event_type(m, "CreateUser", false, &r), ["creation"]);
        assert_eq!(event_type(m, "Getaway", false, &r), ["info"]);
        assert_eq!(
            event_type(m, "Getaway", false, &json!({"readOnly": true})),
            ["access"]
        );
        assert_eq!(event_type(m, "ConsoleLogin", true, &r), ["start"]);
    }

    #[test]
    fn user_names() {
        for (identity, want) in [
            (
                json!({"type": "Root", "arn": "arn:aws:iam::123456789012:root"}),
                Some("root"),
            ),
            (
                json!({"type": "IAMUser", "userName": "Alice", "arn": "arn:aws:iam::1:user/x"}),
                Some("Alice"),
            ),
            (
                json!({"type": "IAMUser", "arn": "arn:aws:iam::1:user/div/Bob"}),
                Some("Bob"),
            ),
            (
                json!({"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/Admin/carol@example.com"}),
                Some("carol@example.com"),
            ),
            (
                json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}),
                None,
            ),
        ] {
            assert_eq!(
                user_name(&json!({"userIdentity": identity})).as_deref(),
                want
            );
        }
    }
}
