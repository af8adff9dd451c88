//! The request body of a proxied call, kept while it streams upstream so that it can be sent
//! once more after an invalid-session answer. Never more than the cap is kept: past it the
//! stream fails and the call is answered 413.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::Mutex;

/// The request body, kept while it streams so it can be sent again once.
#[derive(Debug)]
pub(super) struct Replay {
    state: Mutex<ReplayState>,
    limit: u64,
}

#[derive(Debug)]
struct ReplayState {
    source: Option<axum::body::BodyDataStream>,
    chunks: Vec<Bytes>,
    total: u64,
    exceeded: bool,
}

impl Replay {
    pub(super) fn new(body: Body, limit: u64) -> Arc<Replay> {
        Arc::new(Replay {
            state: Mutex::new(ReplayState {
                source: Some(body.into_data_stream()),
                chunks: Vec::new(),
                total: 0,
                exceeded: false,
            }),
            limit,
        })
    }

    /// A body that yields what was kept, then goes on reading the agent's request.
    pub(super) fn body(self: &Arc<Replay>) -> reqwest::Body {
        let stream =
            futures_util::stream::unfold((self.clone(), 0usize), |(replay, index)| async move {
                let mut state = replay.state.lock().await;
                if let Some(chunk) = state.chunks.get(index).cloned() {
                    drop(state);
                    return Some((Ok(chunk), (replay, index + 1)));
                }
                let next = state.source.as_mut()?.next().await;
                match next {
                    Some(Ok(chunk)) => {
                        state.total += chunk.len() as u64;
                        if state.total > replay.limit {
                            state.exceeded = true;
                            state.source = None;
                            drop(state);
                            return Some((
                                Err(std::io::Error::other("request body too large")),
                                (replay, index),
                            ));
                        }
                        state.chunks.push(chunk.clone());
                        drop(state);
                        Some((Ok(chunk), (replay, index + 1)))
                    }
                    Some(Err(error)) => {
                        state.source = None;
                        drop(state);
                        Some((Err(std::io::Error::other(error)), (replay, index)))
                    }
                    None => {
                        state.source = None;
                        None
                    }
                }
            });
        reqwest::Body::wrap_stream(stream)
    }

    pub(super) async fn exceeded(&self) -> bool {
        self.state.lock().await.exceeded
    }
}
