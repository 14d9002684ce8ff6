//! The fixes in the vendored crates that no end-to-end test can trigger on demand.

use libcontainer::process::channel::main_channel;
use nix::unistd::Pid;

/// libcontainer's main process waits for the intermediate process's `IntermediateReady`, then for
/// the init process's `InitReady`, on one channel that both write to. Under load the init process
/// can get there first; libcontainer 0.6 then failed the create with "received unexpected message:
/// InitReady, expected: IntermediateReady(0)". The vendored copy keeps the early `InitReady`.
#[test]
fn libcontainer_accepts_init_ready_before_intermediate_ready() {
    let (mut sender, mut receiver) = main_channel().expect("main channel");
    sender.init_ready().unwrap();
    sender.intermediate_ready(Pid::from_raw(42)).unwrap();
    assert_eq!(
        receiver.wait_for_intermediate_ready().expect("IntermediateReady after an early InitReady"),
        Pid::from_raw(42)
    );
    receiver.wait_for_init_ready().expect("the early InitReady counts");

    // the usual order still works, and an InitReady is not counted twice
    sender.intermediate_ready(Pid::from_raw(43)).unwrap();
    sender.init_ready().unwrap();
    assert_eq!(receiver.wait_for_intermediate_ready().unwrap(), Pid::from_raw(43));
    receiver.wait_for_init_ready().unwrap();
    sender.close().unwrap();
    assert!(receiver.wait_for_init_ready().is_err(), "no InitReady is left over");
}
