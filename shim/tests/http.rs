//! wasi:http services through `ctr run`: real HTTP requests over loopback to a Wasm container
//! on the host network, and a graceful stop on SIGTERM.

mod common;

use std::time::Duration;

use common::{containerd, http, start_detached, unique_id, wait_for_server, wait_stopped};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn http_component_serves_requests_and_stops_gracefully_on_sigterm() {
    let c = containerd();
    let port = free_port();
    let id = unique_id("http");
    let address = format!("wasmbox.io/http-address=127.0.0.1:{port}");
    start_detached("hello-http", &id, &["--net-host", "--annotation", &address], &[]);
    wait_for_server(port);

    let (status, body) = http(port, "GET", "/hello?x=1", "").unwrap();
    assert_eq!((status, body.as_str()), (200, "Hello from a wasi:http component on wasmbox! GET /hello?x=1\n"));
    let (status, body) = http(port, "POST", "/echo", "a posted body").unwrap();
    assert_eq!((status, body.as_str()), (200, "a posted body"));
    // Every request gets a fresh instance: a trap costs that request only.
    let (status, body) = http(port, "GET", "/trap", "").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with("wasmbox: the guest did not answer"), "{body}");
    assert_eq!(http(port, "GET", "/", "").unwrap().0, 200);

    // SIGTERM while a request is in flight: it is answered, then the container exits 0.
    let slow = std::thread::spawn(move || http(port, "GET", "/slow", ""));
    std::thread::sleep(Duration::from_millis(150));
    let out = c.ctr_output(&["tasks", "kill", "-s", "SIGTERM", &id]);
    assert!(out.status.success(), "{out:?}");
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "slow answer\n"));
    assert_eq!(wait_stopped(&id), 0);
    assert!(http(port, "GET", "/", "").is_err(), "still listening after the stop");
    c.assert_no_leftovers(&id);
}

#[test]
fn http_address_from_the_container_environment() {
    let c = containerd();
    let port = free_port();
    let id = unique_id("http-env");
    let env = format!("WASMBOX_HTTP_ADDRESS=127.0.0.1:{port}");
    start_detached("hello-http", &id, &["--net-host", "--env", &env], &[]);
    wait_for_server(port);
    assert_eq!(http(port, "GET", "/", "").unwrap().0, 200);
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGTERM", &id]).status.success());
    assert_eq!(wait_stopped(&id), 0);
    c.assert_no_leftovers(&id);
}

#[test]
fn http_address_in_use_fails_clearly() {
    let c = containerd();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let id = unique_id("http-busy");
    let address = format!("wasmbox.io/http-address=127.0.0.1:{port}");
    let run = c.run_wasm("hello-http", &id, &["--net-host", "--annotation", &address], &[]);
    assert_eq!(run.code, 126, "{run:?}");
    assert!(run.stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", run.stderr);
    c.assert_no_leftovers(&id);
}
