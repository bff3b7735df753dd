//! The CloudEvent envelope (MODELS.md §8): how messages of channels and queues
//! are built.
//!
//! Keys come in the reference's order: `specversion`, `id`, `source`, `type`,
//! `time`, `data`, then the extension attributes (`owner`, attributes given to
//! `/publish`, extra keys of `/push`), then `_sequence_id` for messages that come
//! from the event log. Attributes named like a standard one (`specversion`, `id`,
//! `source`, `type`, `time`) replace its value in place; an attribute named `data`
//! is ignored (the payload has its own slot).

use serde_json::Value;

use kernelci_core::events::Event;
use kernelci_core::time::Timestamp;

use super::wire::{Fields, Style};

/// The default CloudEvent `type`.
pub const DEFAULT_TYPE: &str = "api.kernelci.org";

/// The `data` of keep-alive messages.
pub const BEEP: &str = "BEEP";

/// A CloudEvent in structured mode (an ordered JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope(pub Fields);

impl Envelope {
    /// A new envelope: a fresh UUID v4 `id`, `time` = `now`, `source` and `type` as
    /// given (JSON `null` when `None`), `data`, then `attributes` in their order
    /// (see the module docs for names that collide with the standard ones).
    pub fn build(
        source: Option<&str>,
        type_: Option<&str>,
        now: Timestamp,
        data: Value,
        attributes: impl IntoIterator<Item = (String, Value)>,
    ) -> Self {
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.to_owned()));
        let mut fields = Fields(vec![
            ("specversion".into(), Value::String("1.0".into())),
            ("id".into(), Value::String(uuid::Uuid::new_v4().to_string())),
            ("source".into(), text(source)),
            ("type".into(), text(type_)),
            ("time".into(), Value::String(now.to_cloudevent_string())),
            ("data".into(), data),
        ]);
        for (k, v) in attributes {
            if k == "data" {
                continue;
            }
            fields.set(k, v);
        }
        Envelope(fields)
    }

    /// A keep-alive message: `"data": "BEEP"`, no owner, no sequence id.
    pub fn beep(source: &str, now: Timestamp) -> Self {
        Self::build(
            Some(source),
            Some(DEFAULT_TYPE),
            now,
            Value::String(BEEP.into()),
            [],
        )
    }

    /// The message of a stored event: default `type` and `source` replaced by
    /// `attributes` of those names, the event's owner (when non-empty; an `owner`
    /// attribute counts only for an event without one), the other attributes, and
    /// `_sequence_id`.
    pub fn of_event(
        event: &Event,
        source: &str,
        now: Timestamp,
        attributes: &serde_json::Map<String, Value>,
    ) -> Self {
        let mut ext: Vec<(String, Value)> = Vec::with_capacity(attributes.len() + 1);
        if let Some(owner) = event.owner.as_deref().filter(|o| !o.is_empty()) {
            ext.push(("owner".into(), Value::String(owner.into())));
        }
        for (k, v) in attributes {
            let already = ext.iter().any(|(e, _)| e == k);
            if !already {
                ext.push((k.clone(), v.clone()));
            }
        }
        let mut env = Self::build(
            Some(source),
            Some(DEFAULT_TYPE),
            now,
            event.data.clone(),
            ext,
        );
        env.0
            .set("_sequence_id", Value::Number(event.sequence_id.into()));
        env
    }

    /// The owner attribute when it is a non-empty string.
    pub fn owner(&self) -> Option<&str> {
        self.0
            .get("owner")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The text clients `json.loads` (Python `json.dumps` style).
    pub fn to_python_json(&self) -> String {
        self.0.to_text(Style::Python)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::id::ObjectId;
    use serde_json::json;

    fn keys(e: &Envelope) -> Vec<&str> {
        e.0 .0.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn event(owner: Option<&str>, data: Value) -> Event {
        Event {
            id: ObjectId::new(),
            timestamp: Timestamp::now(),
            sequence_id: 42,
            channel: "node".into(),
            owner: owner.map(str::to_owned),
            data,
        }
    }

    #[test]
    fn key_order_separators_and_ascii_escaping() {
        let now = kernelci_core::time::parse_query_datetime("2024-01-04T10:48:39.974782").unwrap();
        let attrs = serde_json::Map::from_iter([("zeta".to_string(), json!("é"))]);
        let e = Envelope::of_event(
            &event(Some("bob"), json!({"name": "café 🦀", "n": 1.0})),
            "https://api.kernelci.org/",
            now,
            &attrs,
        );
        assert_eq!(
            keys(&e),
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "data",
                "owner",
                "zeta",
                "_sequence_id"
            ]
        );
        let id = e.0.get("id").and_then(Value::as_str).unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(
            e.to_python_json(),
            format!(
                "{{\"specversion\": \"1.0\", \"id\": \"{id}\", \"source\": \
                 \"https://api.kernelci.org/\", \"type\": \"api.kernelci.org\", \"time\": \
                 \"2024-01-04T10:48:39.974782+00:00\", \"data\": {{\"name\": \"caf\\u00e9 \\ud83e\\udd80\", \
                 \"n\": 1.0}}, \"owner\": \"bob\", \"zeta\": \"\\u00e9\", \
                 \"_sequence_id\": 42}}"
            )
        );
    }

    #[test]
    fn attributes_replace_standard_slots_and_never_data() {
        let now = Timestamp::now();
        let attrs = serde_json::Map::from_iter([
            ("type".to_string(), json!("custom")),
            ("id".to_string(), json!("my-id")),
            ("data".to_string(), json!("ignored")),
            ("owner".to_string(), json!("mallory")),
        ]);
        let e = Envelope::of_event(&event(Some("bob"), json!(1)), "src", now, &attrs);
        assert_eq!(e.0.get("type"), Some(&json!("custom")));
        assert_eq!(e.0.get("id"), Some(&json!("my-id")));
        assert_eq!(e.0.get("data"), Some(&json!(1)));
        assert_eq!(e.owner(), Some("bob"), "the event's owner wins");
        assert_eq!(
            keys(&e),
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "data",
                "owner",
                "_sequence_id"
            ]
        );
        // No owner on the event: an owner attribute is used; empty ones are ignored.
        let e = Envelope::of_event(&event(Some(""), json!(1)), "src", now, &attrs);
        assert_eq!(e.owner(), Some("mallory"));
        let e = Envelope::of_event(&event(None, json!(1)), "src", now, &Default::default());
        assert_eq!(e.owner(), None);
        assert!(e.0.get("owner").is_none());
    }

    #[test]
    fn beeps_have_no_owner_and_no_sequence() {
        let e = Envelope::beep("src", Timestamp::now());
        assert_eq!(
            keys(&e),
            ["specversion", "id", "source", "type", "time", "data"]
        );
        assert_eq!(e.0.get("data"), Some(&json!("BEEP")));
        let time = e.0.get("time").and_then(Value::as_str).unwrap();
        assert!(time.ends_with("+00:00") && time.len() == 32, "{time}");
    }
}
