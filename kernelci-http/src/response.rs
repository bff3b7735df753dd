//! Building responses.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// The response type of every handler.
pub type Resp = Response<Body>;

/// A response body: the whole answer at once (every answer but one), or the
/// chunks a task sends while the client listens (the event stream,
/// `GET /events/stream`), ending when the task drops its sender.
#[derive(Debug)]
pub enum Body {
    /// The whole body.
    Full(Full<Bytes>),
    /// Chunks as they are sent; the channel is bounded, so a slow client makes
    /// the sender wait instead of growing a buffer.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(Full::new(Bytes::new()))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Full(Full::new(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// A response with a body and content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    with_body(status, "application/json", body)
}

/// 200 with a JSON body.
pub fn ok(v: &Value) -> Resp {
    json(StatusCode::OK, v)
}

/// 200 with `v` serialised straight into the body (no `serde_json::Value` on the
/// way: a typed node costs its own serialisation only). A value that cannot be
/// serialised (a map with non-string keys; none of ours) answers `null`, as
/// [`json`] does.
pub fn ok_typed<T: serde::Serialize + ?Sized>(v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    with_body(StatusCode::OK, "application/json", body)
}

/// 200 with a JSON body already serialised.
pub fn ok_raw(body: Vec<u8>) -> Resp {
    with_body(StatusCode::OK, "application/json", body)
}

/// A status with an empty body (204).
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// An HTML page.
pub fn html(body: impl Into<Bytes>) -> Resp {
    with_body(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// The answer for an [`ApiError`].
pub fn error(e: ApiError) -> Resp {
    let mut r = json(e.status, &e.body);
    for (name, value) in e.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}
