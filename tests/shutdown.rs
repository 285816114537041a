//! `Runtime::shutdown` (DESIGN §3): every session over every transport closes
//! within the deadline, no child process and no map entry is left, every call
//! afterwards fails with `shutting_down`, and a server that ignores EOF and
//! SIGTERM is killed in time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, ErrorKind, Runtime};
use serde_json::json;
use support::*;

/// Sessions per server: 50 in all, 10 of them stdio processes.
const SPREAD: [(&str, usize); 5] = [
    ("builtin", 20),
    ("stdio", 6),
    ("http", 12),
    ("sse", 8),
    ("py", 4),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_50_sessions_over_every_transport_leaves_nothing_behind() {
    let demo_http = HttpDemo::start().await;
    let sse_port = free_port();
    let everything = everything_http("sse", sse_port).await;
    let runtime = Runtime::start(config([
        ("builtin", ServerConfig::builtin()),
        ("stdio", demo_stdio()),
        ("http", ServerConfig::http(demo_http.url.clone())),
        (
            "sse",
            ServerConfig::sse(format!("http://127.0.0.1:{sse_port}/sse")),
        ),
        ("py", python_stdio(&[])),
    ]))
    .await
    .unwrap();

    // Open every session with a real round trip, all at once.
    let shared = &runtime;
    let opens = SPREAD.iter().flat_map(|&(server, count)| {
        (0..count).map(move |i| {
            let runtime = shared.clone();
            async move {
                let (tool, args) = match server {
                    "sse" => ("echo", json!({"message": "hi"})),
                    _ => ("counter", json!({})),
                };
                let scope = format!("{server}-{i}");
                runtime
                    .call_tool(server, tool, Some(args), CallOptions::scope(scope))
                    .await
                    .map(|c| text(&c.result))
            }
        })
    });
    for result in futures::future::join_all(opens).await {
        let answer = result.unwrap();
        assert!(answer == "1" || answer == "Echo: hi", "{answer}");
    }
    assert_eq!(runtime.sessions().len(), 50);
    let servers: Vec<u32> = my_children()
        .into_iter()
        .filter(|pid| *pid != everything.pid())
        .collect();
    assert_eq!(servers.len(), 10, "one process per stdio session");

    // One call is still running when shutdown starts.
    let in_flight = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .call_tool(
                    "stdio",
                    "sleep",
                    Some(json!({"ms": 30_000})),
                    CallOptions::scope("stdio-0").with_timeout(Duration::from_secs(60)),
                )
                .await
        })
    };
    eventually(Duration::from_secs(5), "the sleep is in flight", || {
        runtime.sessions().iter().any(|s| s.in_flight == 1)
    })
    .await;

    let deadline = Duration::from_secs(10);
    let started = Instant::now();
    let report = runtime.shutdown(deadline).await;
    let elapsed = started.elapsed();
    eprintln!("shutdown of 50 sessions: {elapsed:?}, {report:?}");
    assert!(elapsed <= deadline, "shutdown took {elapsed:?}");
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(report.sessions_closed, 50);

    let children: Vec<u32> = my_children()
        .into_iter()
        .filter(|pid| *pid != everything.pid())
        .collect();
    assert!(children.is_empty(), "children left: {children:?}");
    for pid in servers {
        assert!(group_members(pid).is_empty(), "group {pid} survives");
    }
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    assert!(runtime.sessions().is_empty());
    for (server, count) in SPREAD {
        assert_eq!(
            metric(
                &runtime,
                "mcp_client_sessions_active",
                &[("mcp_server", server)]
            ),
            0.0,
            "{server}: sessions_active"
        );
        assert_eq!(
            metric(
                &runtime,
                "mcp_client_sessions_closed_total",
                &[("mcp_server", server), ("reason", "shutdown")]
            ),
            count as f64,
            "{server}: closed with reason shutdown"
        );
    }

    let interrupted = tokio::time::timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("the in-flight call ends with the shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(interrupted.kind(), ErrorKind::ShuttingDown, "{interrupted}");

    for (server, _) in SPREAD {
        let error = runtime
            .call_tool(server, "echo", None, CallOptions::scope("after"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ShuttingDown, "{server}: {error}");
        let error = runtime.session(server, Some("after")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ShuttingDown, "{server}: {error}");
        let error = runtime.open(server).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ShuttingDown, "{server}: {error}");
        let error = runtime.list_tools(server, None).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ShuttingDown, "{server}: {error}");
    }
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0), "nothing reopened");
    assert!(my_children().iter().all(|pid| *pid == everything.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_eof_and_sigterm_is_killed_within_the_shutdown_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let runtime = Runtime::start(config([(
        "stubborn",
        python_stdio(&[
            ("BAD_IGNORE_EOF", "1"),
            ("BAD_IGNORE_TERM", "1"),
            ("BAD_LOG", log.to_str().unwrap()),
        ]),
    )]))
    .await
    .unwrap();
    let call = runtime
        .call_tool(
            "stubborn",
            "echo",
            Some(json!({"message": "hi"})),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(text(&call.result), "hi");
    let pid = session_pid(&runtime, "stubborn", "default").unwrap();
    assert!(alive(pid));

    let deadline = Duration::from_secs(1);
    let started = Instant::now();
    let report = runtime.shutdown(deadline).await;
    let elapsed = started.elapsed();
    eprintln!("shutdown with a stubborn server: {elapsed:?}, {report:?}");
    assert!(
        elapsed <= deadline + Duration::from_millis(500),
        "shutdown took {elapsed:?}"
    );
    assert_eq!(report.sessions_closed, 1);
    assert_eq!(report.forced_kills, 1, "{report:?}");
    assert!(!alive(pid), "the stubborn server survived shutdown");
    assert!(group_members(pid).is_empty());
    assert!(my_children().is_empty(), "{:?}", my_children());
    assert_eq!(
        count_lines(&log, &format!("start stdio {pid}")),
        1,
        "it was the server we started"
    );
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_active",
            &[("mcp_server", "stubborn")]
        ),
        0.0
    );
    let error = runtime
        .call_tool("stubborn", "echo", None, CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ShuttingDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_session_to_a_hung_http_server_within_the_deadline_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let _server = python_http("http", port, &log, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let runtime = Runtime::start(config([("hung", ServerConfig::http(url.clone()))]))
        .await
        .unwrap();
    let call = runtime
        .call_tool("hung", "counter", None, CallOptions::scope("a"))
        .await
        .unwrap();
    assert_eq!(text(&call.result), "1");

    // Block the server's event loop: it answers nothing (not even the DELETE
    // that closing the session sends) for the next 4 s.
    let blocked = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .call_tool(
                    "hung",
                    "block_event_loop",
                    Some(json!({"seconds": 4})),
                    CallOptions::scope("a").with_timeout(Duration::from_secs(10)),
                )
                .await
        })
    };
    let probe = reqwest::Client::new();
    eventually_async(
        Duration::from_secs(3),
        "the server stops answering",
        || async {
            probe
                .get(&url)
                .timeout(Duration::from_millis(200))
                .send()
                .await
                .is_err_and(|e| e.is_timeout())
        },
    )
    .await;

    let deadline = Duration::from_secs(1);
    let started = Instant::now();
    let report = runtime.shutdown(deadline).await;
    let elapsed = started.elapsed();
    eprintln!("shutdown with a hung HTTP server: {elapsed:?}, {report:?}");
    assert!(elapsed <= deadline, "shutdown took {elapsed:?}");
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(report.sessions_closed, 1);
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_active",
            &[("mcp_server", "hung")]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("mcp_server", "hung"), ("reason", "shutdown")]
        ),
        1.0
    );
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    let interrupted = tokio::time::timeout(Duration::from_secs(2), blocked)
        .await
        .expect("the in-flight call ends with the shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(interrupted.kind(), ErrorKind::ShuttingDown, "{interrupted}");
}
