//! `GET /backup/{section}` (admin): one page of a section's records
//! ([`Store::export_records`](kernelci_core::store::Store::export_records)), so
//! that `kernelci-server backup` can copy a running server's store page by page,
//! whatever its backend, without stopping it.
//!
//! Query: `after` (the `next` of the previous page, hex), `limit` (1–10,000,
//! default 1,000). Answer: `{"records": [<Record JSON>...], "next": "<hex>" | null}`.
//! Unknown section: 404; a malformed cursor: 400. Each page is read from one view
//! of the store; the order of the pages and the sections is the backup tool's
//! business (see `kernelci-server`'s `backup` module).

use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::store::{ExportCursor, Section};
use kernelci_core::validation::params;

use crate::error::{ApiError, ApiResult};
use crate::handlers::nodes::offload;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::state::AppState;

/// The most records one page may hold.
pub const MAX_PAGE: i64 = 10_000;

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `GET /backup/{section}`.
pub async fn page(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::Backup).await?;
    let name = req.param(0);
    let section = Section::from_name(name)
        .ok_or_else(|| ApiError::not_found(format!("No such section: {name}")))?;
    let limit = params::int_param(&req.query, "limit", 1000, 1)?;
    if limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_PAGE}"
        )));
    }
    let after = match req.query_last("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(ExportCursor::from_bytes(
            hex_decode(a).ok_or_else(|| ApiError::bad_request("Malformed cursor"))?,
        )),
    };
    let limit = usize::try_from(limit).unwrap_or(1);
    let (records, next) = offload(state, move |s| {
        Box::pin(async move { s.export_records(section, after.as_ref(), limit).await })
    })
    .await?;
    let records: Vec<Value> = records
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(response::ok(&json!({
        "records": records,
        "next": next.map(|c| hex_encode(c.as_bytes())),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_as_hex() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(hex_decode(&hex_encode(&bytes)), Some(bytes));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
