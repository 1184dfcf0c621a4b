use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use octo_core::record::{Observer, Observers, Record};
use octo_core::{Body, Event, engine_fn};

use super::*;

/// What a test upstream answers to its n-th call.
type Reply = dyn Fn(usize) -> Result<Response, Error> + Send + Sync;

/// An upstream that counts calls and answers with what `reply` builds.
fn upstream<F>(reply: F) -> (ArcEngine, Arc<AtomicUsize>)
where
    F: Fn(usize) -> Result<Response, Error> + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let reply = Arc::new(reply);
    let engine = Arc::new(engine_fn(move |_req: Request| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let reply = reply.clone();
        async move { reply(n) }
    }));
    (engine, calls)
}

fn cache(inner: ArcEngine) -> ArcEngine {
    CacheLayer::new(
        "m",
        Arc::new(MemoryStore::new(1 << 20)),
        Duration::from_secs(60),
    )
    .layer(inner)
}

fn chat(stream: bool) -> Request {
    let body = if stream {
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    } else {
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
    };
    Request::post(
        Protocol::OpenAiChat,
        "/v1/chat/completions",
        Body::from_bytes(body.to_owned()),
    )
}

fn chat_events(n: usize, end: bool) -> Vec<Event> {
    let mut v = vec![Event::data(Bytes::from(format!(
        r#"{{"id":"c{n}","choices":[{{"delta":{{"content":"hello"}}}}]}}"#
    )))];
    if end {
        v.push(Event::data(Bytes::from_static(b"[DONE]")));
    }
    v
}

async fn read(resp: Response) -> (String, Vec<Result<String, String>>) {
    let header = resp.headers[CACHE_HEADER].to_str().unwrap().to_owned();
    let items = match resp.body {
        ResponseBody::Full(b) => vec![Ok(String::from_utf8(b.to_bytes().to_vec()).unwrap())],
        ResponseBody::Stream(s) => {
            s.map(|r| {
                r.map(|e| String::from_utf8(e.to_frame().to_vec()).unwrap())
                    .map_err(|e| e.message().to_owned())
            })
            .collect()
            .await
        }
    };
    (header, items)
}

#[tokio::test]
async fn a_full_answer_is_replayed_byte_for_byte() {
    let (inner, calls) = upstream(|n| {
        Ok(Response::json(
            200,
            Body::from_bytes(format!(r#"{{"id":"chatcmpl-{n}"}}"#)),
        ))
    });
    let c = cache(inner);
    let first = read(c.process(chat(false)).await.unwrap()).await;
    let second = read(c.process(chat(false)).await.unwrap()).await;
    assert_eq!(first.0, "miss");
    assert_eq!(second.0, "hit");
    assert_eq!(first.1, second.1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A streamed request is another entry.
    assert_eq!(read(c.process(chat(true)).await.unwrap()).await.0, "miss");
}

#[tokio::test]
async fn a_complete_stream_is_replayed_as_the_same_events() {
    let (inner, calls) =
        upstream(|n| Ok(Response::stream(EventStream::iter(chat_events(n, true)))));
    let c = cache(inner);
    let first = read(c.process(chat(true)).await.unwrap()).await;
    let second = read(c.process(chat(true)).await.unwrap()).await;
    assert_eq!((first.0.as_str(), second.0.as_str()), ("miss", "hit"));
    assert_eq!(first.1, second.1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cut_failed_errored_or_abandoned_streams_are_not_stored() {
    let cases: Vec<Box<Reply>> = vec![
        // Ends without [DONE].
        Box::new(|n| Ok(Response::stream(EventStream::iter(chat_events(n, false))))),
        // Fails after an event.
        Box::new(|n| {
            let mut items: Vec<Result<Event, Error>> =
                chat_events(n, false).into_iter().map(Ok).collect();
            items.push(Err(Error::upstream("connection reset")));
            Ok(Response::stream(EventStream::new(futures::stream::iter(
                items,
            ))))
        }),
        // An in-band error event, then [DONE].
        Box::new(|_| {
            Ok(Response::stream(EventStream::iter(vec![
                Event::data(Bytes::from_static(br#"{"error":{"message":"overloaded"}}"#)),
                Event::data(Bytes::from_static(b"[DONE]")),
            ])))
        }),
        // An error answer.
        Box::new(|_| Err(Error::upstream("502 from upstream"))),
        Box::new(|_| Ok(Response::json(429, Body::from_static(b"{}")))),
    ];
    for (i, reply) in cases.into_iter().enumerate() {
        let (inner, calls) = upstream(reply);
        let c = cache(inner);
        for _ in 0..2 {
            if let Ok(resp) = c.process(chat(true)).await {
                let (header, _) = read(resp).await;
                assert_eq!(header, "miss", "case {i}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "case {i}");
    }
    // The client leaves after the first event: nothing is stored.
    let (inner, calls) =
        upstream(|n| Ok(Response::stream(EventStream::iter(chat_events(n, true)))));
    let c = cache(inner);
    let resp = c.process(chat(true)).await.unwrap();
    let ResponseBody::Stream(mut s) = resp.body else {
        panic!("a stream")
    };
    assert!(s.next().await.is_some());
    drop(s);
    let (header, _) = read(c.process(chat(true)).await.unwrap()).await;
    assert_eq!(header, "miss");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn orgs_never_share_entries_and_the_client_can_opt_out() {
    let (inner, calls) = upstream(|n| {
        Ok(Response::json(
            200,
            Body::from_bytes(format!("{{\"n\":{n}}}")),
        ))
    });
    let c = cache(inner);
    let as_org = |org: &str| {
        let mut r = chat(false);
        r.extensions.insert(Identity::new(org, "key"));
        r
    };
    assert_eq!(read(c.process(as_org("a")).await.unwrap()).await.0, "miss");
    assert_eq!(read(c.process(as_org("b")).await.unwrap()).await.0, "miss");
    assert_eq!(read(c.process(as_org("a")).await.unwrap()).await.0, "hit");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let with_cc = |v: &'static str| {
        let mut r = as_org("a");
        r.headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(v));
        r
    };
    // no-store: not looked up, and the fresh answer is not stored.
    assert_eq!(
        read(c.process(with_cc("no-store")).await.unwrap()).await.0,
        "bypass"
    );
    assert_eq!(
        read(c.process(as_org("a")).await.unwrap()).await.1,
        vec![Ok("{\"n\":0}".into())]
    );
    // no-cache: not looked up, but the fresh answer replaces the entry.
    assert_eq!(
        read(c.process(with_cc("no-cache")).await.unwrap()).await.0,
        "miss"
    );
    assert_eq!(
        read(c.process(as_org("a")).await.unwrap()).await.1,
        vec![Ok("{\"n\":3}".into())]
    );
}

#[derive(Default)]
struct Keep(Mutex<Vec<Arc<Record>>>);
impl Observer for Keep {
    fn on_complete(&self, record: &Arc<Record>) {
        self.0.lock().unwrap().push(record.clone());
    }
}

#[tokio::test]
async fn a_hit_is_recorded_with_the_stored_usage_and_no_cost() {
    let (inner, _) = upstream(|_| Ok(Response::json(200, Body::from_static(b"{}"))));
    // The upstream reports usage through the record, as the endpoint's usage tap does.
    let inner: ArcEngine = Arc::new(engine_fn(move |req: Request| {
        let inner = inner.clone();
        async move {
            if let Some(r) = req.extensions.get::<RequestRecord>() {
                r.set_usage(
                    Some(octo_core::usage::Usage {
                        input_tokens: 5,
                        output_tokens: 7,
                        ..Default::default()
                    }),
                    Some("stop"),
                );
            }
            inner.process(req).await
        }
    }));
    let keep = Arc::new(Keep::default());
    let pricing: Arc<octo_core::record::Pricing> =
        Arc::new(|_r: &Record| Some((1.0, octo_core::record::Price::default())));
    let observers = Arc::new(Observers::new().with(keep.clone()).with_pricing(pricing));
    let c = cache(inner);
    for _ in 0..2 {
        let record = RequestRecord::start(Protocol::OpenAiChat, observers.clone());
        let mut req = chat(false);
        req.extensions.insert(record.clone());
        let _ = read(c.process(req).await.unwrap()).await;
        record.complete(200, None);
    }
    let records = keep.0.lock().unwrap();
    let (miss, hit) = (&records[0], &records[1]);
    assert!(!miss.cache_hit);
    assert_eq!(miss.cost_usd, Some(1.0));
    assert!(hit.cache_hit);
    assert_eq!(hit.usage, miss.usage);
    assert_eq!(hit.finish_reason.as_deref(), Some("stop"));
    assert_eq!(hit.cost_usd, None, "a hit costs no upstream money");
    assert!(hit.attempts.is_empty());
}

#[tokio::test]
async fn a_stream_larger_than_an_entry_may_be_is_passed_on_not_stored() {
    let (inner, calls) =
        upstream(|n| Ok(Response::stream(EventStream::iter(chat_events(n, true)))));
    let c = CacheLayer::new(
        "m",
        Arc::new(MemoryStore::new(200)),
        Duration::from_secs(60),
    )
    .layer(inner);
    for _ in 0..2 {
        let (header, items) = read(c.process(chat(true)).await.unwrap()).await;
        assert_eq!(header, "miss");
        assert_eq!(items.len(), 2, "the client still gets every event");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn stream_ends_per_protocol() {
    let ends = |p: Protocol, ev: Event| {
        let data = ev.data_body().to_bytes();
        ends_stream(p, &ev, &data)
    };
    assert!(ends(
        Protocol::OpenAiChat,
        Event::data(Bytes::from_static(b"[DONE]"))
    ));
    assert!(ends(
        Protocol::Anthropic,
        Event::named(
            "message_stop",
            Bytes::from_static(br#"{"type":"message_stop"}"#)
        )
    ));
    assert!(ends(
        Protocol::OpenAiResponses,
        Event::named("response.completed", Bytes::from_static(b"{}"))
    ));
    assert!(!ends(
        Protocol::OpenAiResponses,
        Event::named("response.failed", Bytes::from_static(b"{}"))
    ));
    assert!(ends(
        Protocol::Gemini,
        Event::data(Bytes::from_static(
            br#"{"candidates":[{"finishReason":"STOP"}]}"#
        ))
    ));
    assert!(!ends(
        Protocol::Gemini,
        Event::data(Bytes::from_static(
            br#"{"candidates":[{"content":{"parts":[{"text":"finishReason"}]}}]}"#
        ))
    ));
    assert!(is_error_event(Protocol::Anthropic, Some("error"), b"{}"));
    assert!(is_error_event(
        Protocol::Gemini,
        None,
        br#"{"error":{"code":500}}"#
    ));
    assert!(!is_error_event(
        Protocol::OpenAiChat,
        None,
        br#"{"choices":[{"delta":{"content":"the \"error\" word"}}]}"#
    ));
}
