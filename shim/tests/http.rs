//! wasi:http services through `ctr run`: real HTTP requests over loopback to a Wasm container
//! on the host network, and a graceful stop on SIGTERM.

mod common;

use std::time::Duration;

use common::{containerd, free_port, http, start_detached, unique_id, wait_for_server, wait_stopped};

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

#[test]
fn a_request_that_runs_too_long_is_stopped_while_others_are_served() {
    let c = containerd();
    let port = free_port();
    let id = unique_id("http-spin");
    let address = format!("wasmbox.io/http-address=127.0.0.1:{port}");
    start_detached(
        "hello-http",
        &id,
        &["--net-host", "--annotation", &address, "--annotation", "wasmbox.io/http-request-timeout=3s"],
        &[],
    );
    wait_for_server(port);
    // More spinning requests than the server has threads: each yields at every epoch tick, so
    // the server still answers others meanwhile, and each is stopped at its time limit.
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let spins: Vec<_> = (0..4)
        .map(|n| {
            let finished = finished.clone();
            std::thread::spawn(move || {
                let answer = http(port, "GET", "/spin", "");
                finished.lock().unwrap().push(format!("spin {n}"));
                answer
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = http(port, "GET", "/while-spinning", "").unwrap();
    finished.lock().unwrap().push("hello".into());
    assert_eq!(status, 200, "{body}");
    for spin in spins {
        let (status, body) = spin.join().unwrap().unwrap();
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("the request ran longer than its limit of 3s"), "{body}");
    }
    assert_eq!(
        finished.lock().unwrap()[0],
        "hello",
        "a spinning request held up the others: {:?}",
        finished.lock().unwrap()
    );
    assert_eq!(http(port, "GET", "/", "").unwrap().0, 200, "the server survives");
    assert!(c.ctr_output(&["tasks", "kill", &id]).status.success());
    assert_eq!(wait_stopped(&id), 0);
    c.assert_no_leftovers(&id);
}

#[test]
fn requests_together_stay_within_the_containers_memory_limit() {
    let c = containerd();
    let port = free_port();
    let id = unique_id("http-memory");
    let address = format!("wasmbox.io/http-address=127.0.0.1:{port}");
    // 24 MiB of the limit are the host's: the guests' memories together get 64 MiB
    let limit = ((24 + 64) << 20).to_string();
    start_detached("hello-http", &id, &["--net-host", "--annotation", &address, "--memory-limit", &limit], &[]);
    wait_for_server(port);
    assert_eq!(http(port, "GET", "/grow?mib=40", "").unwrap(), (200, "grew 40 MiB\n".to_owned()), "one request alone");
    // while one request holds 40 MiB, another cannot take 40 more
    let holder = std::thread::spawn(move || http(port, "GET", "/hold?mib=40&ms=2000", ""));
    std::thread::sleep(Duration::from_millis(700));
    let (status, body) = http(port, "GET", "/grow?mib=40", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let got: u32 = body
        .trim()
        .strip_prefix("memory.grow refused after ")
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second request was not limited: {body}"));
    assert!(got < 40, "{body}");
    assert_eq!(holder.join().unwrap().unwrap(), (200, "grew 40 MiB\n".to_owned()));
    // its memory is given back when it ends
    assert_eq!(http(port, "GET", "/grow?mib=40", "").unwrap(), (200, "grew 40 MiB\n".to_owned()));
    assert!(c.ctr_output(&["tasks", "kill", &id]).status.success());
    assert_eq!(wait_stopped(&id), 0);
    c.assert_no_leftovers(&id);
}
