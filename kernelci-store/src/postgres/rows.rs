//! The other records' rows: conversions between columns and core types.

use super::*;

pub(super) fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Storage(e.to_string()))
}

pub(super) fn from_json_text<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: &str,
) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(super) fn utf8(what: &'static str, b: Vec<u8>) -> Result<String> {
    String::from_utf8(b).map_err(|e| corrupt(what, e))
}

pub(super) fn ts(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    t.to_chrono()
}

pub(super) fn from_ts(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_chrono(t)
}

pub(super) fn object_id(b: &[u8]) -> Result<ObjectId> {
    let arr: [u8; 12] = b.try_into().map_err(|_| corrupt("id", "not 12 bytes"))?;
    Ok(ObjectId::from_bytes(arr))
}

pub(super) fn event_from_row(r: &Row) -> Result<Event> {
    let seq: i64 = r.get("seq");
    let data: &str = r.get("data");
    Ok(Event {
        id: object_id(r.get("id"))?,
        timestamp: from_ts(r.get("ts")),
        sequence_id: u64::try_from(seq).unwrap_or(0),
        channel: r.get("channel"),
        owner: r.get("owner"),
        data: from_json_text("event", data)?,
    })
}

pub(super) fn subscriber_from_row(r: &Row) -> SubscriberState {
    let last: i64 = r.get("last_event_id");
    SubscriberState {
        subscriber_id: r.get("subscriber_id"),
        channel: r.get("channel"),
        user: r.get("username"),
        promiscuous: r.get("promiscuous"),
        last_event_id: u64::try_from(last).unwrap_or(0),
        created_at: from_ts(r.get("created_at")),
        last_poll: r
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>("last_poll")
            .map(from_ts),
    }
}

pub(super) fn token_from_row(r: &Row) -> Result<TokenRecord> {
    let purpose: &str = r.get("purpose");
    Ok(TokenRecord {
        id: r.get("id"),
        purpose: match purpose {
            "invite" => TokenPurpose::Invite,
            "reset" => TokenPurpose::Reset,
            other => return Err(corrupt("token", format!("purpose {other}"))),
        },
        user_id: object_id(r.get("user_id"))?,
        expires: from_ts(r.get("expires")),
        used: r.get("used"),
    })
}

pub(super) fn purpose_str(p: TokenPurpose) -> &'static str {
    match p {
        TokenPurpose::Invite => "invite",
        TokenPurpose::Reset => "reset",
    }
}

pub(super) fn page_of<T>(items: Vec<T>, limit: u64, offset: u64) -> Vec<T> {
    items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

pub(super) fn user_params(user: &User) -> Result<(Vec<u8>, Vec<Vec<u8>>, String)> {
    Ok((
        user.id.bytes().to_vec(),
        user.groups.iter().map(|g| g.id.bytes().to_vec()).collect(),
        json_text(user)?,
    ))
}

/// Streams the telemetry rows of `sql` (ordered by id), keeping those `keep` accepts.
pub(super) async fn scan_telemetry_rows(
    client: &mut Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    mut keep: impl FnMut(TelemetryEvent),
) -> Result<()> {
    let tx = read_tx(client, false).await?;
    let portal = tx.bind(sql, params).await.map_err(conv)?;
    loop {
        let rows = tx.query_portal(&portal, BATCH * 4).await.map_err(conv)?;
        for r in &rows {
            keep(from_json_text("telemetry", r.get::<_, &str>(0))?);
        }
        if rows.len() < usize::try_from(BATCH * 4).unwrap_or(0) {
            break;
        }
    }
    tx.commit().await.map_err(conv)
}

pub(super) fn telemetry_range_sql(
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> (String, Params) {
    let mut p = Params::default();
    let mut conds = vec!["TRUE".to_owned()];
    if let Some(s) = since {
        conds.push(format!("ts >= {}", p.bind(ts(s))));
    }
    if let Some(u) = until {
        conds.push(format!("ts <= {}", p.bind(ts(u))));
    }
    (
        format!(
            "SELECT doc FROM kci_telemetry WHERE {} ORDER BY id",
            conds.join(" AND ")
        ),
        p,
    )
}
