//! A `wasi:http/incoming-handler` component: answers every request with a greeting naming its
//! method and path; `/echo` sends back the request body, `/slow` answers after half a second,
//! `/trap` traps (the host answers 500).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct HelloHttp;

wasi::http::proxy::export!(HelloHttp);

impl Guest for HelloHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let body = match path.as_str() {
            "/trap" => panic!("asked to trap"),
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
