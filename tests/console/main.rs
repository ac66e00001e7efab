//! The operator console in a real browser (Debian's `chromium` driven through
//! `chromedriver`), against the real gateway and a real receiver. Run by `.ci/run` with
//! `cargo test --test console` once it has installed both; plain `cargo test` leaves it out.
//!
//! Every step is an operator's click, and every check waits for the console's own polling to
//! show the new state: nothing is refreshed by the test. Screenshots land in
//! `target/console-screenshots/`.

#[path = "../it/common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use thirtyfour::prelude::*;

use common::{poll, TestReceiver, TestServer};

/// How long the console may take to show a change (it polls every 2 s).
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

/// `chromedriver` on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} ({e}): install chromium and chromium-driver")
            });
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let status = format!("{url}/status");
        let ready = poll(Duration::from_secs(30), || {
            let request = client.get(&status).send();
            async move {
                let body: serde_json::Value = request.await.ok()?.json().await.ok()?;
                body["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        assert!(ready.is_some(), "chromedriver did not become ready");
        ChromeDriver { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A headless browser on a laptop-sized window.
async fn browser(driver: &ChromeDriver) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    if let Ok(binary) = std::env::var("CHROMIUM") {
        caps.set_binary(&binary).unwrap();
    }
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ] {
        caps.add_arg(arg).unwrap();
    }
    WebDriver::new(&driver.url, caps)
        .await
        .expect("a browser session")
}

/// The console, driven like an operator would.
struct Console {
    driver: WebDriver,
    base: String,
    shots: PathBuf,
}

impl Console {
    /// A browser on the console of `server`, signed in with its team's key and the admin
    /// key. Keep the driver alive as long as the console.
    async fn signed_in(server: &TestServer) -> (ChromeDriver, Console) {
        let chromedriver = ChromeDriver::start().await;
        let console = Console {
            driver: browser(&chromedriver).await,
            base: server.base.clone(),
            shots: screenshot_dir(),
        };
        console.sign_in(server).await;
        (chromedriver, console)
    }

    async fn screenshot(&self, name: &str) {
        self.driver
            .screenshot(&self.shots.join(format!("{name}.png")))
            .await
            .expect("screenshot");
    }

    async fn go(&self, route: &str) {
        self.driver
            .goto(format!("{}/console{route}", self.base))
            .await
            .expect("navigate");
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element.scroll_into_view().await.ok();
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The element, once it is in the page and shown.
    async fn find(&self, css: &str) -> WebElement {
        let found = poll(SHOWN_WITHIN, || async {
            let element = self.driver.find(By::Css(css)).await.ok()?;
            element
                .is_displayed()
                .await
                .ok()
                .filter(|d| *d)
                .map(|_| element)
        })
        .await;
        match found {
            Some(element) => element,
            None => {
                self.screenshot("failed-find").await;
                panic!("{css} was not shown within {SHOWN_WITHIN:?}");
            }
        }
    }

    /// Waits until the text of `css` satisfies `want`; answers it.
    async fn wait_text(&self, css: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
        let last = std::sync::Mutex::new(String::new());
        let seen = poll(SHOWN_WITHIN, || {
            let found = self.driver.find(By::Css(css));
            let (last, want) = (&last, &want);
            async move {
                let text = found.await.ok()?.text().await.ok()?;
                let text = text.trim().to_string();
                *last.lock().unwrap() = text.clone();
                want(&text).then_some(text)
            }
        })
        .await;
        let last = last.into_inner().unwrap();
        match seen {
            Some(text) => text,
            None => {
                self.screenshot("failed-wait").await;
                panic!("{css} never showed {what} within {SHOWN_WITHIN:?}; last text {last:?}");
            }
        }
    }

    /// Opens a destination's page and waits for its breaker to show `state`.
    async fn breaker_shows(&self, destination: &str, state: &str) {
        self.go(&format!("#/destinations/{destination}")).await;
        self.wait_text("#circuit-state", state, |t| t == state)
            .await;
    }

    /// Opens the actions menu of a connection's row, picks `action`, and confirms.
    async fn connection_action(&self, connection: &str, action: &str) {
        let row = format!(r#"tr[data-connection-id="{connection}"]"#);
        self.click(&format!("{row} .actions-button")).await;
        self.click(&format!(r#"{row} button[data-action="{action}"]"#))
            .await;
        self.find("#confirm-message").await;
    }

    async fn assert_accessible(&self, page: &str) {
        let problems = self
            .driver
            .execute(ACCESSIBILITY_PROBLEMS, Vec::new())
            .await
            .expect("run the accessibility probe");
        let problems: Vec<String> = problems.convert().expect("a list of problems");
        assert!(problems.is_empty(), "{page}: {problems:#?}");
    }

    /// The attribute `name` of the first element matching `css`.
    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .expect("read an attribute")
    }

    /// A menu button's `aria-expanded`.
    async fn expanded(&self, button: &str) -> Option<String> {
        self.attribute(button, "aria-expanded").await
    }

    /// Whether the focused element matches `css`.
    async fn focused(&self, css: &str) -> bool {
        let script =
            "return document.activeElement && document.activeElement.matches(arguments[0]);";
        let matches = self
            .driver
            .execute(script, vec![serde_json::Value::String(css.into())])
            .await
            .expect("read the focus");
        matches.convert::<bool>().unwrap_or(false)
    }

    async fn sign_in(&self, server: &TestServer) {
        self.go("").await;
        self.find("#login-team")
            .await
            .send_keys(&server.team_id)
            .await
            .unwrap();
        self.find("#login-key")
            .await
            .send_keys(&server.api_key)
            .await
            .unwrap();
        self.find("#login-admin-key")
            .await
            .send_keys(&server.admin_key)
            .await
            .unwrap();
        self.click("#login-submit").await;
    }
}

/// What a screen reader or a keyboard user would miss on the page now: form fields without
/// a label, buttons and links without a name, charts without a text alternative.
const ACCESSIBILITY_PROBLEMS: &str = r#"
    const problems = [];
    const named = (el) => (el.getAttribute('aria-label') || el.textContent || el.title || '').trim();
    for (const el of document.querySelectorAll('input, select, textarea')) {
        if (el.type === 'hidden' || el.closest('[hidden]')) continue;
        if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.getAttribute('aria-labelledby')) {
            problems.push('unlabelled ' + el.tagName + ' ' + (el.id || el.name));
        }
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
        if (el.closest('[hidden]')) continue;
        if (!named(el)) problems.push('nameless ' + el.tagName + ' ' + el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll('svg')) {
        if (!el.getAttribute('aria-label') && !el.querySelector('title')
            && el.getAttribute('aria-hidden') !== 'true') {
            problems.push('svg without a text alternative ' + (el.id || ''));
        }
    }
    return problems;
"#;

fn as_count(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_drains_resets_a_breaker_and_retries_from_the_console() {
    let server = TestServer::start().await;
    let steady = TestReceiver::start().await;
    let flaky = TestReceiver::start().await;
    let (held_src, _, held_conn) = server.pipeline(&steady.url(), json!({}), json!([])).await;
    let (flaky_src, flaky_dest, _) = server.breaker_pipeline(&flaky.url(), 3, 60).await;

    let (_chromedriver, console) = Console::signed_in(&server).await;
    console.go("#/connections").await;
    let row = format!(r#"tr[data-connection-id="{held_conn}"]"#);
    console
        .wait_text(&format!("{row} .state-badge"), "Active", |t| t == "Active")
        .await;
    console.screenshot("01-connections").await;
    console.assert_accessible("connections").await;

    // The actions menu works from the keyboard: Enter opens it on its first item, Escape
    // closes it and gives the focus back to its button.
    let actions = format!("{row} .actions-button");
    console
        .find(&actions)
        .await
        .send_keys(Key::Enter + "")
        .await
        .unwrap();
    assert_eq!(console.expanded(&actions).await.as_deref(), Some("true"));
    assert!(
        console.focused(&format!("{row} [data-action]")).await,
        "the open menu has no focused item"
    );
    console
        .driver
        .action_chain()
        .send_keys(Key::Escape + "")
        .perform()
        .await
        .unwrap();
    assert_eq!(console.expanded(&actions).await.as_deref(), Some("false"));
    assert!(console.focused(&actions).await, "the focus did not return");

    // Pause from the actions menu; the confirmation says what happens to new events.
    console.connection_action(&held_conn, "pause").await;
    let message = console.find("#confirm-message").await.text().await.unwrap();
    assert!(
        message.contains("HOLD") || message.to_lowercase().contains("held"),
        "the pause confirmation does not say events are held: {message}"
    );
    console.screenshot("02-pause-confirmation").await;
    console.click("#confirm-ok").await;
    console
        .wait_text(&format!("{row} .state-badge"), "Paused", |t| t == "Paused")
        .await;

    // Events arrive while paused: the held count rises, the receiver gets nothing.
    server.send_events(&held_src, 6, "held").await;
    console
        .wait_text(&format!("{row} .held-count"), "6 held", |t| {
            as_count(t) == Some(6)
        })
        .await;
    assert_eq!(steady.hit_count(), 0, "a paused connection delivered");
    console.screenshot("03-held").await;

    // Unpause with a drain rate: the held count drains to zero and the receiver has all six.
    console.connection_action(&held_conn, "unpause").await;
    console
        .find("#confirm-drain-rate")
        .await
        .send_keys("3")
        .await
        .unwrap();
    console.screenshot("04-unpause-confirmation").await;
    console.click("#confirm-ok").await;
    console
        .wait_text(&format!("{row} .held-count"), "0 held", |t| {
            as_count(t) == Some(0)
        })
        .await;
    console
        .wait_text(&format!("{row} .state-badge"), "Active", |t| t == "Active")
        .await;
    let drained = poll(SHOWN_WITHIN, || {
        let n = steady.delivered_ids().len();
        async move { (n == 6).then_some(()) }
    })
    .await;
    assert!(drained.is_some(), "the receiver got {}", steady.hit_count());
    console.screenshot("05-drained").await;

    // A failing receiver opens the breaker; the destination page shows it live.
    console.breaker_shows(&flaky_dest, "closed").await;
    flaky.set_status(500);
    server.send_events(&flaky_src, 4, "flaky").await;
    console
        .wait_text("#circuit-state", "open", |t| t == "open")
        .await;
    console
        .wait_text("#failure-count", "3", |t| t.contains('3'))
        .await;
    console.screenshot("06-breaker-open").await;
    console.assert_accessible("destination").await;

    // The open breaker's issue, acknowledged from the issues page.
    let (_, issues) = server
        .api()
        .get(&format!(
            "/v1/issues?destination_id={flaky_dest}&status=OPENED"
        ))
        .await;
    let issue = issues["models"][0]["id"]
        .as_str()
        .expect("an open issue")
        .to_string();
    console.go("#/issues").await;
    console
        .click(&format!(
            r#"tr[data-issue-id="{issue}"] button[data-action="ack"]"#
        ))
        .await;
    let acknowledged = poll(SHOWN_WITHIN, || async {
        let (_, v) = server.api().get(&format!("/v1/issues/{issue}")).await;
        (v["status"] == "ACKNOWLEDGED").then_some(())
    })
    .await;
    assert!(acknowledged.is_some(), "the issue was not acknowledged");
    console.screenshot("07-issue-acknowledged").await;
    console.breaker_shows(&flaky_dest, "open").await;

    // The receiver is healthy again: Reset circuit closes it and the waiting event goes out.
    flaky.set_status(200);
    console.click("#reset-circuit").await;
    console.find("#confirm-message").await;
    console.click("#confirm-ok").await;
    console
        .wait_text("#circuit-state", "closed", |t| t == "closed")
        .await;
    console.screenshot("08-breaker-reset").await;

    // A dead-lettered event, retried from the events page, is delivered.
    let failed = server
        .events(&format!("source_id={flaky_src}&status=FAILED"))
        .await;
    assert!(!failed.is_empty(), "no FAILED event to retry");
    let event = failed[0]["id"].as_str().unwrap().to_string();
    console.go("#/events").await;
    console
        .click(r#"input[name="filter-status"][value="FAILED"]"#)
        .await;
    console.click("#apply-filters").await;
    let event_row = format!(r#"tr[data-event-id="{event}"]"#);
    console
        .wait_text(&format!("{event_row} .event-status"), "FAILED", |t| {
            t == "FAILED"
        })
        .await;
    console.screenshot("09-failed-events").await;
    console.assert_accessible("events").await;
    console.click(&format!("{event_row} .retry-event")).await;
    let delivered = poll(SHOWN_WITHIN, || {
        let seen = flaky.delivered_ids().contains(&event);
        async move { seen.then_some(()) }
    })
    .await;
    assert!(delivered.is_some(), "the retried event was not delivered");
    console.go(&format!("#/events/{event}")).await;
    console
        .wait_text("#event-status", "SUCCESSFUL", |t| t == "SUCCESSFUL")
        .await;
    console.screenshot("10-event-retried").await;
    console.assert_accessible("event").await;

    // A provider's payload is shown as text, never run: markup in it stays inert.
    let hostile = r#"<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>"#;
    let ids = server.ingest_ok(&held_src, hostile, "text/html").await;
    console.go(&format!("#/events/{}", ids[0])).await;
    console
        .wait_text("#event-payload", "the payload as text", |t| {
            t.contains(r#"onerror="window.pwned=1""#)
        })
        .await;
    let untouched = console
        .driver
        .execute("return window.pwned === undefined;", Vec::new())
        .await
        .expect("read window.pwned");
    assert!(
        untouched.convert::<bool>().unwrap(),
        "a payload's markup ran in the console"
    );
    let injected = console.driver.find_all(By::Css("#event-payload img")).await;
    assert!(
        injected.unwrap().is_empty(),
        "a payload's <img> became an element"
    );
    console.go("#/issues").await;
    console.find("#issues").await;
    console.assert_accessible("issues").await;

    // An operator pauses the whole engine: the banner says so; an admin resumes from it.
    let (status, _) = server.admin().put("/admin/engine/pause", None).await;
    assert_eq!(status, 200);
    console.find("#engine-banner").await;
    console.screenshot("11-engine-paused").await;
    console.click("#engine-resume").await;
    console.find("#confirm-message").await;
    console.click("#confirm-ok").await;
    let resumed = poll(SHOWN_WITHIN, || async {
        let (_, v) = server.api().get("/v1/engine").await;
        (v["paused"] == false).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "the engine was not resumed");
    let hidden = poll(SHOWN_WITHIN, || async {
        let banner = console.driver.find(By::Id("engine-banner")).await.ok()?;
        (!banner.is_displayed().await.ok()?).then_some(())
    })
    .await;
    assert!(hidden.is_some(), "the banner still shows a resumed engine");

    console.driver.quit().await.expect("quit the browser");
}

/// The gateway's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The gateway's CPU seconds per second over `window`, sampled every second.
async fn cpu_load(pid: i32, window: Duration) -> f64 {
    let start = cpu_seconds(pid);
    let began = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..window.as_secs() {
        tick.tick().await;
    }
    (cpu_seconds(pid) - start) / began.elapsed().as_secs_f64()
}

/// A console left open on 1,000 connections shows one page of them at a time, pages
/// through them, and costs the gateway little: the figure is printed (and reported in
/// BENCHMARKS.md), not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_left_open_on_a_thousand_connections_shows_a_page_and_costs_little() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let (src, dest, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let mut made = 1;
    while made < 1000 {
        let batch: Vec<_> = (made..(made + 50).min(1000))
            .map(|_| server.create_connection(&src, &dest, json!([])))
            .collect();
        made += batch.len();
        futures_util::future::join_all(batch).await;
    }

    let window = Duration::from_secs(20);
    let idle = cpu_load(server.pid(), window).await;

    let (_chromedriver, console) = Console::signed_in(&server).await;
    console.go("#/connections").await;
    let rows = "#connections tbody tr[data-connection-id]";
    let shown = poll(SHOWN_WITHIN, || async {
        let n = console.driver.find_all(By::Css(rows)).await.ok()?.len();
        (n == 100).then_some(n)
    })
    .await;
    assert_eq!(shown, Some(100), "one page of 100 connections");
    let first_page = console.attribute(rows, "data-connection-id").await;
    console.click("#page-next").await;
    let second_page = poll(SHOWN_WITHIN, || async {
        let id = console.attribute(rows, "data-connection-id").await;
        (id != first_page).then_some(id)
    })
    .await;
    assert!(second_page.is_some(), "Next did not show the next page");
    console.screenshot("12-thousand-connections").await;

    let open = cpu_load(server.pid(), window).await;
    println!(
        "gateway CPU with 1,000 connections: idle {:.4} s/s, console open on them {:.4} s/s \
         (+{:.4} s/s)",
        idle,
        open,
        open - idle
    );
    console.driver.quit().await.expect("quit the browser");
}
