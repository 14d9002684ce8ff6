use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use containerd_shim::event::Event;
use containerd_shim::protos::shim::events::{Envelope, ForwardRequest};
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::{Client, EventsClient};
use containerd_shim::publisher::RemotePublisher;
use log::warn;

use crate::sandbox::async_utils::AmbientRuntime as _;
use protobuf::Message;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;

pub trait EventSender: Clone + Send + Sync + 'static {
    fn send<E: Event + Message>(&self, event: E);
}

/// How an event goes to containerd (wasmbox change).
enum Sink {
    /// The shim's own client of containerd's event service: events are packed without protobuf
    /// reflection. Replaced by a new connection when containerd restarted (the old one is dead),
    /// dropped once no event was sent for [`IDLE_AFTER`] and made again for the next one.
    Client(Arc<ClientSlot>),
    /// containerd-shim's publisher, when the shim's own client could not connect: it packs each
    /// event through `descriptor_dyn()`, which builds the reflection of containerd's event
    /// protos on first use (343 KiB of heap for the life of every shim process, measured).
    Publisher(RemotePublisher),
}

/// How long the shim's own events client stays connected after its last event (wasmbox): an idle
/// shim held the connection and the client's two threads (about 20 KiB of private memory) for
/// its life; a container's events come in bursts (create and start, then exit and delete).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The shim's own events client, while connected, and how many events it has sent.
struct ClientSlot {
    client: std::sync::Mutex<Option<EventsClient>>,
    sent: AtomicU64,
}

impl ClientSlot {
    /// Sends `request`, on the open connection or, if there is none or it failed (containerd
    /// restarted), on a new one.
    fn forward(self: &Arc<Self>, request: &ForwardRequest) -> anyhow::Result<()> {
        let mut client = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sent = match client.as_mut() {
            Some(open) => open.forward(Context::default(), request).is_ok(),
            None => false,
        };
        if !sent {
            client.insert(own_events_client()?).forward(Context::default(), request)?;
        }
        let count = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        drop(client);
        self.disconnect_when_idle(count);
        Ok(())
    }

    /// Drops the connection [`IDLE_AFTER`] from now unless another event is sent meanwhile.
    fn disconnect_when_idle(self: &Arc<Self>, count: u64) {
        let slot = Arc::clone(self);
        // Detached: the timer runs on, its handle is not needed.
        drop(
            async move {
                tokio::time::sleep(IDLE_AFTER).await;
                let mut client = slot.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if slot.sent.load(Ordering::SeqCst) == count {
                    client.take();
                }
            }
            .spawn(),
        );
    }
}

#[derive(Clone)]
pub struct RemoteEventSender {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    sink: Sink,
}

impl RemoteEventSender {
    pub fn new(namespace: impl AsRef<str>, publisher: RemotePublisher) -> RemoteEventSender {
        let namespace = namespace.as_ref().to_string();
        // wasmbox: a client of its own on containerd's TTRPC address (the publisher's is dropped).
        let sink = match own_events_client() {
            Ok(client) => Sink::Client(Arc::new(ClientSlot {
                client: std::sync::Mutex::new(Some(client)),
                sent: AtomicU64::new(0),
            })),
            Err(err) => {
                warn!("events go through containerd-shim's publisher: {err}");
                Sink::Publisher(publisher)
            }
        };
        RemoteEventSender { inner: Arc::new(Inner { namespace, sink }) }
    }
}

/// A client of containerd's event service at `TTRPC_ADDRESS`, which containerd sets for shims.
fn own_events_client() -> anyhow::Result<EventsClient> {
    let address = std::env::var("TTRPC_ADDRESS")?;
    let fd = containerd_shim::util::connect(&address)?;
    Ok(EventsClient::new(Client::new(fd)?))
}

/// The event as a protobuf `Any`, named as containerd-shim names it (`containerd.events.NAME`),
/// without protobuf reflection (wasmbox change).
fn pack<E: Message>(event: &E) -> protobuf::Result<Any> {
    Ok(Any { type_url: format!("containerd.events.{}", E::NAME), value: event.write_to_bytes()?, ..Default::default() })
}

impl EventSender for RemoteEventSender {
    fn send<E: Event + Message>(&self, event: E) {
        let topic = event.topic();
        let sent = match &self.inner.sink {
            Sink::Client(client) => pack(&event).map_err(anyhow::Error::from).and_then(|any| {
                let mut envelope = Envelope::new();
                envelope.set_topic(topic.clone());
                envelope.set_namespace(self.inner.namespace.clone());
                envelope.set_timestamp(Utc::now().to_timestamp());
                envelope.set_event(any);
                let mut request = ForwardRequest::new();
                request.set_envelope(envelope);
                client.forward(&request)
            }),
            Sink::Publisher(publisher) => publisher
                .publish(Default::default(), &topic, &self.inner.namespace, Box::new(event))
                .map_err(anyhow::Error::from),
        };
        if let Err(err) = sent {
            warn!("failed to publish event, topic: {}: {}", &topic, err)
        }
    }
}

pub(super) trait ToTimestamp {
    fn to_timestamp(self) -> Timestamp;
}

impl<Tz: TimeZone> ToTimestamp for DateTime<Tz> {
    fn to_timestamp(self) -> Timestamp {
        Timestamp { seconds: self.timestamp(), nanos: self.timestamp_subsec_nanos() as i32, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::events::task::TaskExit;
    use protobuf::MessageDyn;

    use super::*;

    #[test]
    fn events_are_named_as_containerd_shim_names_them() {
        let event = TaskExit { container_id: "c".into(), exit_status: 3, ..Default::default() };
        let any = pack(&event).unwrap();
        // what `containerd_shim::util::convert_to_any` produces, through reflection
        assert_eq!(any.type_url, event.descriptor_dyn().full_name());
        assert_eq!(any.value, event.write_to_bytes().unwrap());
    }
}
