//! A `wasi:http/incoming-handler` component: answers every request with a greeting naming its
//! method and path; `/echo` sends back the request body, `/slow` answers after half a second,
//! `/trap` traps (the host answers 500), `/spin` loops forever without a system call (the host's
//! per-request time limit ends it), `/grow?mib=N` grows linear memory by N MiB with
//! `memory.grow` and says how far it got, `/hold?mib=N&ms=M` grows it and holds it M ms first.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct HelloHttp;

wasi::http::proxy::export!(HelloHttp);

impl Guest for HelloHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let body = match path.as_str() {
            "/trap" => panic!("asked to trap"),
            "/spin" => spin(),
            p if p.starts_with("/grow?mib=") => grow(p["/grow?mib=".len()..].parse().unwrap_or(0), 0),
            p if p.starts_with("/hold?") => {
                let number = |key: &str| -> u64 {
                    p.split(['?', '&']).find_map(|kv| kv.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
                };
                grow(number("mib=") as usize, number("ms="))
            }
            "/echo" => read_body(&request),
            "/slow" => {
                wasi::clocks::monotonic_clock::subscribe_duration(500_000_000).block();
                b"slow answer\n".to_vec()
            }
            _ => format!("Hello from a wasi:http component on wasmbox! {} {path}\n", method_name(&request.method()))
                .into_bytes(),
        };
        let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())])
            .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("the body of a new response");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("the body stream");
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("writing the body");
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finishing the body");
    }
}

#[inline(never)]
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows linear memory 1 MiB at a time with `memory.grow` (so that a refusal is seen, where
/// Rust's allocator would abort), then waits `hold_ms` before answering.
fn grow(mib: usize, hold_ms: u64) -> Vec<u8> {
    let mut got = 0;
    while got < mib {
        #[cfg(target_arch = "wasm32")]
        let grown = core::arch::wasm32::memory_grow(0, 16) != usize::MAX;
        #[cfg(not(target_arch = "wasm32"))]
        let grown = false;
        if !grown {
            return format!("memory.grow refused after {got} MiB\n").into_bytes();
        }
        got += 1;
    }
    if hold_ms > 0 {
        wasi::clocks::monotonic_clock::subscribe_duration(hold_ms * 1_000_000).block();
    }
    format!("grew {got} MiB\n").into_bytes()
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let incoming = request.consume().expect("the request body");
    let stream = incoming.stream().expect("the request body stream");
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}
