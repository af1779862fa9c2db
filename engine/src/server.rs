//! HTTP surface and the accept loop: `/ws`, `/socket.io/` (from [`crate::socketio_http`]),
//! `/admin/stats` (from [`crate::admin`]), `/healthz`, `/readyz`, `/metrics` (and `/echo` in
//! tests), served on a listener until a shutdown signal, then drained. With the REST API
//! (`evd serve`) it also mounts the browser page and, on the development secret only, the
//! development sign-in.

use crate::auth::authenticate;
use crate::broker::redis::{RedisBroker, RedisConn};
use crate::conn::Wire;
use crate::handshake::Handshake;
use crate::node::{BrokerFactory, ConnPermit, Node, NodeBuilder, NodeError};
use crate::presence::redis::RedisPresence;
use crate::session::{self, echo};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::stats::redis::RedisBoard;
use crate::upgrade::{ban_refusal, configure, foreign_origin_refusal, refusal, refuse};
use crate::{admin, dev_token, page, socketio_http};
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use evd_protocol::Codec;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The engine's router. Tests call it directly; [`serve`] puts it on a socket.
///
/// `/ws` answers CORS for `cors.allowed_origins`, so a page of another origin can read why a
/// plain `GET /ws?token=…` was refused; `/admin/stats` too, so such a page can show the view.
pub fn app(node: Arc<Node>) -> Router {
    let cors = evd_api::cors::layer(&node.settings.api.cors);
    let mut router = Router::new()
        .route(page::WS_PATH, any(ws).layer(cors.clone()))
        .route(admin::STATS_PATH, get(admin::stats).layer(cors))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if node.settings.test_echo {
        router = router.route("/echo", any(echo_ws));
    }
    let socketio = socketio_http::router(Arc::clone(&node));
    router.with_state(node).merge(socketio)
}

/// Serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The node could not be built.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The broker could not be reached.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] evd_api::store::StoreError),
    /// The REST API's settings are unusable.
    #[error("api: {0}")]
    Api(#[from] evd_protocol::auth::JwtConfigError),
    /// The socket or TLS setup failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// `evd serve`: the engine and the REST API in one process over one store (SQLite at
/// `./evd.db` by default, migrated at start), served on `listener` until `signal`, then drained.
/// This is the whole server.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_mode(listener, settings, true, signal).await
}

/// `evd engine`: the engine alone, over the store (for the live features and the outbox relay).
/// Run the REST API elsewhere with `evd api` against the same database.
pub async fn run_engine(
    listener: TcpListener,
    settings: Settings,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_mode(listener, settings, false, signal).await
}

async fn run_mode(
    listener: TcpListener,
    settings: Settings,
    with_api: bool,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut settings = settings;
    if settings.broker.url != "memory" && settings.node_id.is_none() {
        // The Redis presence needs the id before the node is built.
        settings.node_id = Some(crate::node::random_node_id());
    }
    let api_settings = settings.api();
    let store = evd_api::store::connect(
        &settings.api.database_url,
        &api_settings.store_config(),
        evd_api::clock::Clock::system(),
    )
    .await?;
    let shutdown = Shutdown::new();
    let node = with_broker(Node::builder(settings.clone()), &settings)
        .await?
        .store(Arc::clone(&store))
        .build(shutdown.clone())?;
    let api = if with_api {
        let every = Duration::from_millis(api_settings.sweep_interval_ms.max(1));
        evd_api::spawn_sweeper(store.clone(), every, shutdown.stop_token());
        Some(evd_api::AppState::new(store.clone(), &api_settings)?)
    } else {
        None
    };
    let served = serve_with(listener, node, api, signal).await;
    store.close().await;
    served
}

/// Plugs the broker, presence and stats board named by `broker.url` into `builder`: nothing
/// for `memory`, the Redis ones (connected here) otherwise. `settings.node_id` must be set for Redis.
pub async fn with_broker(
    builder: NodeBuilder,
    settings: &Settings,
) -> Result<NodeBuilder, ServeError> {
    if settings.broker.url == "memory" {
        return Ok(builder);
    }
    let node_id = settings
        .node_id
        .clone()
        .unwrap_or_else(crate::node::random_node_id);
    let conn = RedisConn::connect(&settings.broker).await?;
    tracing::info!(
        url = %evd_api::store::redact_url(&settings.broker.url),
        node = %node_id,
        "connected to Redis"
    );
    let presence = Arc::new(RedisPresence::new(
        &node_id,
        conn.client.clone(),
        Duration::from_millis(settings.presence.ttl_ms),
    ));
    let (history, broker_settings) = (settings.history.clone(), settings.broker.clone());
    let board = Arc::new(RedisBoard::new(conn.client.clone()));
    let factory: BrokerFactory = Box::new(move |id, handler, shutdown| {
        RedisBroker::start(id, conn, history, broker_settings, handler, shutdown)
    });
    Ok(builder.broker(factory).presence(presence).board(board))
}

/// After the drain and the listener's close, how long the process waits for its tasks (relay,
/// writers committing what was queued) before it exits anyway. A process supervisor's grace
/// period must cover `drain.grace_ms + drain.close_timeout_ms` plus this.
pub const TASKS_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Serves `node` on `listener` until `signal`, then drains: `/readyz` fails, clients get
/// `RECONNECT` and 4001 spread over the grace period, and whatever is left is closed.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(listener, node, None, signal).await
}

/// [`serve`], with the REST API, the browser page and (on the development secret) the
/// development sign-in mounted beside the engine's routes when `api` is given.
pub async fn serve_with(
    listener: TcpListener,
    node: Arc<Node>,
    api: Option<evd_api::AppState>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let shutdown = node.shutdown.clone();
    let drain = node.settings.drain.clone();
    let mut router = app(Arc::clone(&node));
    if let Some(state) = api {
        router = router
            .merge(evd_api::app(state))
            .merge(browser_routes(&node));
    }
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let tls = &node.settings.tls;
    let stop = shutdown.stopped();

    // Phase 1 → 2: after the signal, drain for the grace period (or until every connection is
    // gone), then stop.
    let coordinator = {
        let shutdown = shutdown.clone();
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            signal.await;
            tracing::info!(
                connections = node.connections(),
                grace_ms = drain.grace_ms,
                "draining"
            );
            shutdown.begin_drain();
            let limit = Duration::from_millis(drain.grace_ms + drain.close_timeout_ms);
            let _ = tokio::time::timeout(limit, async {
                while node.connections() > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            shutdown.stop();
        })
    };

    let served = match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Io {
                    context: "loading the TLS certificate and key",
                    source,
                })?;
            let std_listener = listener.into_std().map_err(|source| ServeError::Io {
                context: "preparing the listener",
                source,
            })?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                stop.await;
                h.graceful_shutdown(Some(Duration::from_secs(1)));
            });
            axum_server::from_tcp_rustls(std_listener, config)
                .map_err(|source| ServeError::Io {
                    context: "starting TLS",
                    source,
                })?
                .handle(handle)
                .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
                .serve(app)
                .await
        }
        _ => {
            // Small frames go out at once: Nagle's algorithm would hold a fanout frame back
            // until the client's delayed ACK of the previous one (tens of ms).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    };
    served.map_err(|source| ServeError::Io {
        context: "serving",
        source,
    })?;
    shutdown.stop();
    let _ = coordinator.await;
    if !shutdown.wait_tasks(TASKS_EXIT_WAIT).await {
        tracing::warn!(
            tasks = shutdown.tasks_running(),
            "tasks still running at exit"
        );
    }
    Ok(())
}

/// The page and its `/config.json`, and `POST /dev/token` while the development secret is in
/// use, with CORS for `cors.allowed_origins` (a page served elsewhere in development may sign in
/// here).
fn browser_routes(node: &Node) -> Router {
    let settings = &node.settings;
    let mut routes = page::router(settings);
    if settings.api.jwt.uses_dev_secret() {
        tracing::warn!(
            path = dev_token::PATH,
            "development sign-in is open: anyone who reaches this server can mint a token; set \
             EVD_JWT_SECRET to close it"
        );
        let store = node.live.as_ref().map(|live| Arc::clone(&live.store));
        routes = routes.merge(dev_token::router(settings.api.jwt.clone(), store));
    }
    routes.layer(evd_api::cors::layer(&settings.api.cors))
}

/// Picks the first subprotocol the client offers that the server speaks, and the header that
/// names it; JSON (and no header) otherwise. The raw header is read because the order of the
/// client's list is its preference.
fn negotiate(headers: &HeaderMap) -> (Codec, Option<HeaderValue>) {
    let chosen = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| Codec::from_subprotocol(p).map(|c| (c, p.trim().to_owned())));
    match chosen {
        Some((codec, name)) => (codec, HeaderValue::from_str(&name).ok()),
        None => (Codec::Json, None),
    }
}

/// Whether the server runs behind its own TLS: then WebSockets go through axum's upgrade and
/// a writer task, since their socket cannot be written around the TLS layer.
fn behind_tls(settings: &Settings) -> bool {
    settings.tls.cert_path.is_some() && settings.tls.key_path.is_some()
}

async fn ws(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    // A page of a foreign origin is refused first: its token says nothing about the page.
    if let Some(refused) = foreign_origin_refusal(&node, &headers, &uri) {
        return refused;
    }
    // The token is checked before anything else about the upgrade: a bad token is a 401 even on
    // a malformed upgrade request (a browser, which cannot read an upgrade's status, learns this
    // way with a plain `GET` whether its token was refused).
    let claims = match authenticate(&node.verifier, &headers, query.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            node.metrics.rejected("unauthorized");
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
        }
    };
    if let Some(refused) = ban_refusal(&node, &claims.org, &claims.sub).await {
        return refused;
    }
    let (mut parts, _body) = request.into_parts();
    let (codec, protocol) = negotiate(&headers);
    if !behind_tls(&node.settings) {
        let handshake = match Handshake::from_parts(&mut parts) {
            Ok(h) => h,
            Err(refused) => return refused.into_response(),
        };
        let permit: ConnPermit = match node.admit(peer.ip(), Wire::Evd.label()) {
            Ok(p) => p,
            Err(r) => return refusal(&node, r),
        };
        return handshake.accept(protocol, move |socket, read_buf| {
            let shutdown = node.shutdown.clone();
            shutdown.spawn(session::run_direct(
                node, socket, read_buf, claims, codec, permit,
            ));
            std::future::ready(())
        });
    }
    let mut upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let permit: ConnPermit = match node.admit(peer.ip(), Wire::Evd.label()) {
        Ok(p) => p,
        Err(r) => return refusal(&node, r),
    };
    if let Some(p) = protocol {
        upgrade.set_selected_protocol(p);
    }
    let settings = Arc::clone(&node);
    configure(upgrade, &settings.settings).on_upgrade(move |socket| {
        // The connection gets a task of its own, and axum's upgrade task ends here: awaiting
        // the connection inside it would keep that task's state (about 1 KiB) beside ours for
        // the connection's whole life.
        let shutdown = node.shutdown.clone();
        shutdown.spawn(session::run_connection(
            node,
            socket,
            claims,
            Wire::Evd,
            codec,
            permit,
        ));
        std::future::ready(())
    })
}

async fn echo_ws(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    if !behind_tls(&node.settings) {
        let handshake = match Handshake::from_parts(&mut parts) {
            Ok(h) => h,
            Err(refused) => return refused.into_response(),
        };
        let permit = match node.admit(peer.ip(), "echo") {
            Ok(p) => p,
            Err(r) => return refusal(&node, r),
        };
        let tracked = node.shutdown.clone();
        return handshake.accept(None, move |socket, read_buf| {
            tracked.track(echo::run_direct(node, socket, read_buf, permit))
        });
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let permit = match node.admit(peer.ip(), "echo") {
        Ok(p) => p,
        Err(r) => return refusal(&node, r),
    };
    let tracked = node.shutdown.clone();
    configure(upgrade, &node.settings)
        .on_upgrade(move |socket| tracked.track(echo::run(Arc::clone(&node), socket, permit)))
}

/// 200 when the node takes connections and can serve them (see [`Node::readiness`]);
/// otherwise 503 and the reason.
async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.readiness().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        node.prometheus.render(),
    )
        .into_response()
}
