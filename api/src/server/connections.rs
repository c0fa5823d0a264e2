//! A cap on open connections: each connection holds a slot for its lifetime; a connection
//! over the cap is answered 503 (problem+json, `Retry-After`) and closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Router;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::problem::Problem;

/// Makes one [`Connection`] service per accepted connection.
#[derive(Clone)]
pub(super) struct ConnectionCap {
    router: Router,
    slots: Arc<Semaphore>,
}

impl ConnectionCap {
    pub(super) fn new(router: Router, connections_max: usize) -> ConnectionCap {
        ConnectionCap { router, slots: Arc::new(Semaphore::new(connections_max)) }
    }

    /// The service of one newly accepted connection: it holds a slot, or answers 503.
    pub(super) fn admit(&self) -> Connection {
        let slot = self.slots.clone().try_acquire_owned().ok().map(Arc::new);
        Connection { router: self.router.clone(), _slot: slot.clone(), admitted: slot.is_some() }
    }
}

impl Service<IncomingStream<'_>> for ConnectionCap {
    type Response = Connection;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Connection, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: IncomingStream<'_>) -> Self::Future {
        std::future::ready(Ok(self.admit()))
    }
}

/// The service of one connection; its slot is released when the connection closes.
#[derive(Clone)]
pub(super) struct Connection {
    router: Router,
    _slot: Option<Arc<OwnedSemaphorePermit>>,
    admitted: bool,
}

impl Service<Request> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <Router as Service<Request>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !self.admitted {
            return Box::pin(async {
                let mut resp = Problem::overloaded("too many open connections; retry later").into_response();
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                Ok(resp)
            });
        }
        Box::pin(self.router.call(req))
    }
}
