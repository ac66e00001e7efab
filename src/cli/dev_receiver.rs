//! `fasthook dev-receiver`: a local receiver that answers 200 and prints what it gets, so a
//! new user can watch deliveries arrive without writing a server.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

async fn receive(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let event = req
        .headers()
        .get("x-fasthook-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let attempt = req
        .headers()
        .get("x-fasthook-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    println!(
        "{} {} event={event} attempt={attempt} {}",
        req.method(),
        req.path(),
        String::from_utf8_lossy(&body)
    );
    HttpResponse::Ok().json(serde_json::json!({"received": true}))
}

pub fn run(listen: &str) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(listen)?;
        for addr in server.addrs() {
            println!("dev-receiver listening on http://{addr}");
        }
        server.run().await
    })
}
