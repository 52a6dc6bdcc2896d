//! Unit tests of `supervisor.rs`: how an actor stops a linked child on purpose (the mesh actor its
//! worker supervisor), with stand-in actors.

use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;

use super::stop_child;

/// Bound on every wait for an event.
const WAIT: Duration = Duration::from_secs(20);

/// A child that, when told to, hangs in its handler as a stuck worker would.
struct Child;

enum ChildMsg {
    /// Answer, then never return.
    Hang(RpcReplyPort<()>),
}

impl Actor for Child {
    type Msg = ChildMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<ChildMsg>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ChildMsg>,
        message: ChildMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChildMsg::Hang(reply) => {
                let _ = reply.send(());
                std::future::pending().await
            }
        }
    }
}

/// An owner that stops a child with [`stop_child`] when asked and reports every child's end it hears of.
struct Owner;

enum OwnerMsg {
    StopChild(ActorCell, Duration, RpcReplyPort<()>),
    Ping(RpcReplyPort<()>),
}

impl Actor for Owner {
    type Msg = OwnerMsg;
    type State = mpsc::UnboundedSender<String>;
    type Arguments = mpsc::UnboundedSender<String>;

    async fn pre_start(
        &self,
        _myself: ActorRef<OwnerMsg>,
        heard: mpsc::UnboundedSender<String>,
    ) -> Result<mpsc::UnboundedSender<String>, ActorProcessingErr> {
        Ok(heard)
    }

    async fn handle(
        &self,
        myself: ActorRef<OwnerMsg>,
        message: OwnerMsg,
        _heard: &mut mpsc::UnboundedSender<String>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            OwnerMsg::StopChild(child, bound, reply) => {
                stop_child(&myself.get_cell(), &child, "stopped on purpose", bound).await;
                let _ = reply.send(());
            }
            OwnerMsg::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<OwnerMsg>,
        event: SupervisionEvent,
        heard: &mut mpsc::UnboundedSender<String>,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(event, SupervisionEvent::ActorTerminated(..) | SupervisionEvent::ActorFailed(..)) {
            let _ = heard.send(event.to_string());
        }
        Ok(())
    }
}

async fn owner_with_child(
) -> (ActorRef<OwnerMsg>, ActorRef<ChildMsg>, tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<String>) {
    let (heard_sender, heard) = mpsc::unbounded_channel();
    let (owner, _) = Actor::spawn(None, Owner, heard_sender).await.expect("owner starts");
    let (child, child_ended) = Actor::spawn_linked(None, Child, (), owner.get_cell()).await.expect("child starts");
    assert_eq!(child.try_get_supervisor().map(|cell| cell.get_id()), Some(owner.get_id()), "linked");
    (owner, child, child_ended, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_stopped_on_purpose_is_unlinked_first_so_its_owner_does_not_hear_of_it() {
    let (owner, child, child_ended, mut heard) = owner_with_child().await;
    let stop = owner.call(|reply| OwnerMsg::StopChild(child.get_cell(), WAIT, reply), Some(WAIT));
    stop.await.expect("the owner answers").expect("stopped");
    tokio::time::timeout(WAIT, child_ended).await.expect("the child ended").expect("joined");
    // Supervision events are handled before messages: whatever the stop told the owner is handled
    // before this ping is answered.
    owner.call(OwnerMsg::Ping, Some(WAIT)).await.expect("the owner answers").expect("pong");
    assert_eq!(heard.try_recv().ok(), None, "a child stopped on purpose is not reported as ended");
    owner.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_does_not_stop_within_the_bound_is_killed() {
    let (owner, child, child_ended, _heard) = owner_with_child().await;
    child.call(ChildMsg::Hang, Some(WAIT)).await.expect("the child answers").expect("hanging");
    let stop = owner.call(|reply| OwnerMsg::StopChild(child.get_cell(), Duration::from_millis(50), reply), Some(WAIT));
    stop.await.expect("the owner answers").expect("stop given up");
    // The owner goes on; the stuck child must not outlive the stop (and hold its registered name).
    tokio::time::timeout(WAIT, child_ended).await.expect("the stuck child was killed").expect("joined");
    owner.stop(None);
}
