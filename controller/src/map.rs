//! The live map's page, embedded in the binary and served at `/map`: the
//! files of `controller/map/` (not its `dev/` folder) with their content types
//! and a `Content-Security-Policy` that allows nothing from elsewhere. The page
//! reads the API and [`crate::stream`]; `docs/map.md` is its contract.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use daemon::admin;

/// The page's files: (name under `/map/`, content type, body).
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../map/index.html"),
    ),
    (
        "geo.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../map/geo.js"),
    ),
    (
        "map.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../map/map.js"),
    ),
    (
        "map.css",
        "text/css; charset=utf-8",
        include_bytes!("../map/map.css"),
    ),
    (
        "land-110m.json",
        "application/json",
        include_bytes!("../map/land-110m.json"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../map/favicon.svg"),
    ),
    (
        "LICENSE-world-atlas.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../map/LICENSE-world-atlas.txt"),
    ),
];

/// Sent with every file of the page: it loads nothing from elsewhere and has
/// no inline script or style.
pub const CSP: &str = "default-src 'self'";

/// `/map`, `/map/` and `/map/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/map", get(|| async { asset("index.html") }))
        .route("/map/", get(|| async { asset("index.html") }))
        .route(
            "/map/{file}",
            get(|Path(file): Path<String>, uri: Uri| async move {
                match ASSETS.iter().any(|(name, _, _)| *name == file) {
                    true => asset(&file),
                    false => admin::not_found(uri).await,
                }
            }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return admin::error(StatusCode::NOT_FOUND, &format!("no such file: {name}"));
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Small, and a new controller may ship a new page: revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        *body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn get(path: &str) -> Response {
        routes::<()>()
            .fallback(admin::not_found)
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answer")
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_their_types_and_the_csp() {
        let index = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/map/index.html"))
            .expect("controller/map/index.html");
        for path in ["/map", "/map/", "/map/index.html"] {
            let r = get(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
            assert_eq!(r.headers()["content-security-policy"], "default-src 'self'");
            let body = axum::body::to_bytes(r.into_body(), 1 << 20)
                .await
                .expect("body");
            assert_eq!(body.as_ref(), index.as_slice(), "{path}");
        }
        let mut total = 0;
        for (name, ty, body) in ASSETS {
            let r = get(&format!("/map/{name}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()["content-type"], *ty, "{name}");
            assert_eq!(r.headers()["content-security-policy"], CSP);
            let on_disk = std::fs::read(format!("{}/map/{name}", env!("CARGO_MANIFEST_DIR")))
                .expect("the file the binary embeds");
            assert_eq!(*body, on_disk.as_slice(), "{name} embedded as on disk");
            total += body.len();
        }
        assert!(
            total > 50_000 && total < 200_000,
            "the page is {total} bytes"
        );
        // Every file of controller/map/ is served, and nothing else.
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/map"))
                .expect("controller/map")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(n, _, _)| n.to_string()).collect();
        served.sort();
        assert_eq!(served, on_disk);
    }

    #[tokio::test]
    async fn anything_else_under_map_is_a_json_404() {
        for path in [
            "/map/dev",
            "/map/dev/mock_server.py",
            "/map/nope.js",
            "/map/..%2fCargo.toml",
        ] {
            let r = get(path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        }
    }
}
