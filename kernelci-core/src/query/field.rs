//! Field paths of the query language: `kind`, `data.kernel_revision.tree`,
//! `artifacts.log`, `path.0`...

use std::fmt;

use super::{QueryError, MAX_PATH_SEGMENTS};

/// The top-level node field a path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Root {
    /// `kind`
    Kind,
    /// `name`
    Name,
    /// `path`
    Path,
    /// `group`
    Group,
    /// `parent`
    Parent,
    /// `state`
    State,
    /// `result`
    Result,
    /// `artifacts`
    Artifacts,
    /// `data`
    Data,
    /// `debug`
    Debug,
    /// `jobfilter`
    Jobfilter,
    /// `platform_filter`
    PlatformFilter,
    /// `created`
    Created,
    /// `updated`
    Updated,
    /// `timeout`
    Timeout,
    /// `holdoff`
    Holdoff,
    /// `owner`
    Owner,
    /// `submitter`
    Submitter,
    /// `treeid`
    Treeid,
    /// `user_groups`
    UserGroups,
    /// `processed_by_kcidb_bridge`
    ProcessedByKcidbBridge,
    /// `retry_counter`
    RetryCounter,
    /// Any other name: never present on a node. This includes `id` and `_id`, which
    /// the reference compares as strings against ObjectIds and so never match (use
    /// `GET /node/{id}`).
    Other,
}

impl Root {
    fn from_name(s: &str) -> Root {
        match s {
            "kind" => Root::Kind,
            "name" => Root::Name,
            "path" => Root::Path,
            "group" => Root::Group,
            "parent" => Root::Parent,
            "state" => Root::State,
            "result" => Root::Result,
            "artifacts" => Root::Artifacts,
            "data" => Root::Data,
            "debug" => Root::Debug,
            "jobfilter" => Root::Jobfilter,
            "platform_filter" => Root::PlatformFilter,
            "created" => Root::Created,
            "updated" => Root::Updated,
            "timeout" => Root::Timeout,
            "holdoff" => Root::Holdoff,
            "owner" => Root::Owner,
            "submitter" => Root::Submitter,
            "treeid" => Root::Treeid,
            "user_groups" => Root::UserGroups,
            "processed_by_kcidb_bridge" => Root::ProcessedByKcidbBridge,
            "retry_counter" => Root::RetryCounter,
            _ => Root::Other,
        }
    }

    /// The datetime fields, whose query values are parsed as datetimes.
    pub fn is_timestamp(&self) -> bool {
        matches!(
            self,
            Root::Created | Root::Updated | Root::Timeout | Root::Holdoff
        )
    }
}

/// A dotted field path, resolved once at parse time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    root: Root,
    /// Segments after the root (empty for a top-level field).
    rest: Vec<String>,
}

impl FieldPath {
    /// Parses `a.b.c`; every segment must be non-empty.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let segments: Vec<&str> = text.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(QueryError::malformed(
                text,
                format!("Invalid field name '{text}': empty path segment"),
            ));
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(QueryError::too_large(
                text,
                format!("Field name '{text}' has more than {MAX_PATH_SEGMENTS} segments"),
            ));
        }
        let root = Root::from_name(segments[0]);
        Ok(Self {
            text: text.to_owned(),
            root,
            rest: segments[1..].iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level field.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The segments below the top-level field.
    pub fn rest(&self) -> &[String] {
        &self.rest
    }

    /// True for a top-level field (no dots).
    pub fn is_top_level(&self) -> bool {
        self.rest.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
