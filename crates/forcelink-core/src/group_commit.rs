//! Group commit of rotation writes: the in-flight records and the commits of many concurrent
//! refreshes reach the store together, one transaction per group.
//!
//! Each refresh hands its write to one writer task per broker and waits for its own answer.
//! The writer takes whatever is queued (up to `MAX_GROUP`), applies it with one
//! `Store::write_rotations` call and answers every waiter individually. A lone write (nothing
//! else queued, now or in the last group) is written at once; under load (a heartbeat round,
//! a refresh storm) the writer lingers a millisecond or a few (`LINGER`, while more keep
//! arriving) so the other refreshes in flight join the group, which is what makes groups large. If a group fails as a
//! whole, each of its writes is tried again alone, so one bad write cannot fail the others.
//! A waiter is answered only after its group's transaction is durable (or failed); the number
//! of writes that a crash can catch in flight is bounded by the refreshes in flight, as before.
//! This module must not decide anything about a write: conditions are the store's.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::store::{RotationWrite, RotationWritten, Store, StoreError};

/// At most this many writes per group (and so per transaction).
const MAX_GROUP: usize = 128;

/// How long a group waits for more writes while others are arriving (tokio's timer rounds
/// this up to its millisecond tick), and how often it waits again while more keep arriving.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
const MAX_LINGERS: u32 = 3;

type Answer = Result<RotationWritten, StoreError>;

/// A write waiting for its group.
struct Queued {
    write: RotationWrite,
    answer: oneshot::Sender<Answer>,
}

/// The handle refreshes write through; the writer task starts on first use.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    store: Arc<dyn Store>,
    queue: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
}

impl GroupCommit {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            queue: Mutex::new(None),
        }
    }

    /// Writes `write` with whatever group it joins; answers once the group is durable.
    pub(crate) async fn write(&self, write: RotationWrite) -> Answer {
        let (answer, answered) = oneshot::channel();
        let mut queued = Queued { write, answer };
        // A writer whose runtime has gone is replaced once.
        for _ in 0..2 {
            let queue = self.queue()?;
            match queue.send(queued) {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(
                            "the rotation writer stopped before answering".into(),
                        ))
                    });
                }
                Err(mpsc::error::SendError(back)) => {
                    queued = back;
                    self.forget(&queue);
                }
            }
        }
        Err(StoreError::Unavailable(
            "the rotation writer is not running".into(),
        ))
    }

    fn queue(&self) -> Result<mpsc::UnboundedSender<Queued>, StoreError> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = queue.as_ref() {
            return Ok(sender.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Unavailable("the rotation writer needs a tokio runtime".into())
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(self.store.clone(), receiver));
        *queue = Some(sender.clone());
        Ok(sender)
    }

    fn forget(&self, dead: &mpsc::UnboundedSender<Queued>) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if queue
            .as_ref()
            .is_some_and(|sender| sender.same_channel(dead))
        {
            *queue = None;
        }
    }
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("key", self.write.key())
            .finish()
    }
}

/// The writer task: ends when every handle is gone.
async fn run(store: Arc<dyn Store>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut group: Vec<Queued> = Vec::with_capacity(MAX_GROUP);
    let mut last_group = 0;
    loop {
        if queue.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        // Let refreshes that are about to write join this group.
        tokio::task::yield_now().await;
        take_queued(&mut queue, &mut group);
        // Others are writing too: wait for more of them while they keep coming.
        let mut lingered = 0;
        while (group.len() > 1 || last_group > 1)
            && group.len() < MAX_GROUP
            && lingered < MAX_LINGERS
        {
            let before = group.len();
            tokio::time::sleep(LINGER).await;
            lingered += 1;
            take_queued(&mut queue, &mut group);
            if group.len() == before {
                break;
            }
        }
        last_group = group.len();
        write_group(store.as_ref(), &mut group).await;
    }
}

fn take_queued(queue: &mut mpsc::UnboundedReceiver<Queued>, group: &mut Vec<Queued>) {
    while group.len() < MAX_GROUP {
        match queue.try_recv() {
            Ok(queued) => group.push(queued),
            Err(_) => break,
        }
    }
}

async fn write_group(store: &dyn Store, group: &mut Vec<Queued>) {
    metrics::histogram!("forcelink_rotation_group_size").record(group.len() as f64);
    tracing::debug!(writes = group.len(), "writing a rotation group");
    let (writes, answers): (Vec<RotationWrite>, Vec<oneshot::Sender<Answer>>) = group
        .drain(..)
        .map(|queued| (queued.write, queued.answer))
        .unzip();
    match store.write_rotations(&writes).await {
        Ok(written) if written.len() == writes.len() => {
            for (answer, written) in answers.into_iter().zip(written) {
                // A waiter that gave up is no reason to stop.
                let _ = answer.send(Ok(written));
            }
        }
        Ok(_) => {
            let error = StoreError::Corrupt("a rotation group was answered incompletely".into());
            for answer in answers {
                let _ = answer.send(Err(error.clone()));
            }
        }
        Err(error) if writes.len() > 1 => {
            tracing::warn!(%error, writes = writes.len(), "a rotation group failed; writing each alone");
            for (write, answer) in writes.into_iter().zip(answers) {
                let alone = store
                    .write_rotations(std::slice::from_ref(&write))
                    .await
                    .and_then(|written| {
                        written.into_iter().next().ok_or_else(|| {
                            StoreError::Corrupt("a rotation write was not answered".into())
                        })
                    });
                let _ = answer.send(alone);
            }
        }
        Err(error) => {
            for answer in answers {
                let _ = answer.send(Err(error.clone()));
            }
        }
    }
}
