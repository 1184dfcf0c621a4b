// A release build on Windows is a GUI program: no console window next to the tray icon.
#![cfg_attr(all(windows, not(debug_assertions)), windows_subsystem = "windows")]
//! `octollm-desktop`: OctoLLM in the system tray, the gateway in-process, the web panel in a
//! window. Everything that is not drawing lives in the library (`octo_desktop`): this file
//! turns its menu model into a tray menu, its status into an icon, and its effects into windows.
//!
//! Threads: the main thread runs the tao event loop (GTK on Linux; the tray icon must be created
//! on it, at `StartCause::Init`); the gateway runs on a tokio runtime beside it. The two talk
//! through the event loop's proxy (`UserEvent`): menu clicks go to the runtime as actions, and
//! status changes, effects and log lines come back as events.
//!
//! Environment: `OCTOLLM_DESKTOP_DIR` (the data directory), `OCTOLLM_DESKTOP_LISTEN` (overrides
//! the config's `listen`), `OCTOLLM_LOG` (log filter, default `info`), `OCTOLLM_DESKTOP_OPEN`
//! (`panel`, `logs` or both, comma-separated: windows to open once the gateway runs, as the
//! end-to-end test does).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use octo_desktop::logs::Line;
use octo_desktop::menu::{self, Action, App, Effect, MenuItem};
use octo_desktop::{Gateway, LogHub, Paths, Status, icon};
use tao::event::{Event, StartCause, WindowEvent};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy, EventLoopWindowTarget};
use tao::window::{Window, WindowBuilder, WindowId};
use tray_icon::menu::{Menu, MenuEvent, MenuItem as TrayItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};
use wry::{PageLoadEvent, WebView, WebViewBuilder};

/// What the runtime tells the event loop.
#[derive(Debug)]
enum UserEvent {
    /// A tray menu item was chosen.
    Menu(String),
    /// The status or today's figures changed: redraw the tray.
    Redraw(Status, Vec<MenuItem>),
    /// An action finished and the UI must show something.
    Effect(Effect),
    /// New log lines for the log window.
    Log(Vec<Line>),
    /// The panel window finished loading this URL.
    PanelLoaded(String),
}

/// A window with its web view.
struct View {
    window: Window,
    webview: WebView,
}

/// The event loop's state.
struct Ui {
    app: App,
    rt: tokio::runtime::Handle,
    proxy: EventLoopProxy<UserEvent>,
    tray: Option<TrayIcon>,
    items: HashMap<String, TrayItem>,
    status_item: Option<TrayItem>,
    panel: Option<View>,
    logs: Option<View>,
    /// The number of the last line the log window shows.
    logs_seen: u64,
    /// First run: send the panel to the onboarding page once signed in.
    onboarding: bool,
    /// Windows to open once the gateway runs (`OCTOLLM_DESKTOP_OPEN`).
    open_at_start: Vec<String>,
    last_status: Option<Status>,
}

fn main() -> ExitCode {
    let hub = LogHub::new();
    let filter = std::env::var("OCTOLLM_LOG").unwrap_or_else(|_| "info".into());
    if let Err(e) = hub.install(&filter).or_else(|_| hub.install("info")) {
        eprintln!("octollm-desktop: cannot start logging: {e}");
    }
    match run(hub) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("octollm-desktop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(hub: Arc<LogHub>) -> Result<(), Box<dyn std::error::Error>> {
    let paths = Paths::from_env()?;
    let first_run = paths
        .ensure()
        .map_err(|e| format!("cannot write {}: {e}", paths.config.display()))?;
    tracing::info!(dir = %paths.dir.display(), first_run, "octollm-desktop data directory");
    let listen = match std::env::var("OCTOLLM_DESKTOP_LISTEN") {
        Ok(a) => Some(
            a.parse()
                .map_err(|e| format!("OCTOLLM_DESKTOP_LISTEN `{a}`: {e}"))?,
        ),
        Err(_) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let app = App {
        gateway: Arc::new(Gateway::new(paths, listen)),
        logs: hub,
    };
    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    {
        let proxy = proxy.clone();
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            let _ = proxy.send_event(UserEvent::Menu(e.id.0));
        }));
    }
    spawn_watchers(&runtime, &app, &proxy);
    {
        // SIGINT / SIGTERM quit like the menu's Quit: the gateway drains first.
        let proxy = proxy.clone();
        runtime.spawn(async move {
            quit_signal().await;
            let _ = proxy.send_event(UserEvent::Menu(Action::Quit.id().into()));
        });
    }
    {
        let gateway = app.gateway.clone();
        runtime.spawn(async move {
            gateway.start().await;
        });
    }
    let open_at_start = std::env::var("OCTOLLM_DESKTOP_OPEN")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let mut open_at_start = open_at_start;
    if first_run && !open_at_start.iter().any(|w| w == "panel") {
        open_at_start.push("panel".into());
    }
    let mut ui = Ui {
        app,
        rt: runtime.handle().clone(),
        proxy,
        tray: None,
        items: HashMap::new(),
        status_item: None,
        panel: None,
        logs: None,
        logs_seen: 0,
        onboarding: first_run,
        open_at_start,
        last_status: None,
    };
    event_loop.run(move |event, target, flow| {
        *flow = ControlFlow::Wait;
        match event {
            Event::NewEvents(StartCause::Init) => {
                if let Err(e) = ui.build_tray() {
                    tracing::error!(error = %e, "cannot create the tray icon");
                }
            }
            Event::UserEvent(e) => ui.on_user_event(e, target, flow),
            Event::WindowEvent {
                window_id,
                event: WindowEvent::CloseRequested,
                ..
            } => ui.close(window_id),
            _ => {}
        }
    })
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C on Windows).
async fn quit_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Redraws the tray on every status change and every few seconds (today's figures), and
/// forwards log lines in batches.
fn spawn_watchers(rt: &tokio::runtime::Runtime, app: &App, proxy: &EventLoopProxy<UserEvent>) {
    let (app2, proxy2) = (app.clone(), proxy.clone());
    rt.spawn(async move {
        let mut watch = app2.gateway.watch();
        loop {
            let status = app2.gateway.status();
            let items = app2.menu().await;
            if proxy2.send_event(UserEvent::Redraw(status, items)).is_err() {
                return;
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    let (hub, proxy3) = (app.logs.clone(), proxy.clone());
    rt.spawn(async move {
        let (_, mut rx) = hub.subscribe();
        loop {
            let mut batch = match rx.recv().await {
                Ok(line) => vec![line],
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "the log window fell behind");
                    Vec::new()
                }
                Err(_) => return,
            };
            while let Ok(line) = rx.try_recv() {
                batch.push(line);
            }
            if proxy3.send_event(UserEvent::Log(batch)).is_err() {
                return;
            }
            // At most a few redraws a second however busy the gateway is.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

impl Ui {
    fn build_tray(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let status = self.app.gateway.status();
        let model = menu::items(&status, None);
        let tray_menu = Menu::new();
        for (i, item) in model.iter().enumerate() {
            let id = item.action.map_or("status", Action::id);
            // Separators after the status line, before the windows, before Quit.
            if matches!(item.action, Some(Action::OpenPanel | Action::Quit)) {
                tray_menu.append(&PredefinedMenuItem::separator())?;
            }
            let entry = TrayItem::with_id(id, &item.label, item.enabled, None);
            tray_menu.append(&entry)?;
            if i == 0 {
                tray_menu.append(&PredefinedMenuItem::separator())?;
                self.status_item = Some(entry);
            } else {
                self.items.insert(id.to_owned(), entry);
            }
        }
        let tray = TrayIconBuilder::new()
            .with_menu(Box::new(tray_menu))
            .with_tooltip(menu::tooltip(&status))
            .with_icon(tray_icon_for(&status)?)
            .with_title("OctoLLM")
            .build()?;
        self.tray = Some(tray);
        Ok(())
    }

    fn on_user_event(
        &mut self,
        event: UserEvent,
        target: &EventLoopWindowTarget<UserEvent>,
        flow: &mut ControlFlow,
    ) {
        match event {
            UserEvent::Menu(id) => {
                let Some(action) = Action::from_id(&id) else {
                    return;
                };
                tracing::info!(action = action.label(), "tray menu");
                let (app, proxy) = (self.app.clone(), self.proxy.clone());
                self.rt.spawn(async move {
                    let effect = app.dispatch(action).await;
                    let _ = proxy.send_event(UserEvent::Effect(effect));
                });
            }
            UserEvent::Redraw(status, items) => self.redraw(status, &items),
            UserEvent::Effect(effect) => self.apply(effect, target, flow),
            UserEvent::Log(lines) => {
                if let Some(v) = &self.logs {
                    // Lines the window got with its backlog are skipped.
                    let seen = self.logs_seen;
                    if let Some(last) = lines.last() {
                        self.logs_seen = self.logs_seen.max(last.seq);
                    }
                    let fresh: Vec<String> = lines
                        .into_iter()
                        .filter(|l| l.seq > seen)
                        .map(|l| l.text)
                        .collect();
                    if !fresh.is_empty() {
                        let _ = v
                            .webview
                            .evaluate_script(&format!("append({})", json_strings(&fresh)));
                    }
                }
            }
            UserEvent::PanelLoaded(url) => {
                tracing::debug!(%url, "panel loaded");
                if self.onboarding
                    && let Some(v) = &self.panel
                {
                    self.onboarding = false;
                    let _ = v
                        .webview
                        .evaluate_script("if (!location.hash) location.hash = '#/welcome';");
                }
            }
        }
    }

    fn redraw(&mut self, status: Status, items: &[MenuItem]) {
        if self.last_status.as_ref() != Some(&status) {
            // One line on stdout per change: scripts (the end-to-end test) wait for it.
            match &status {
                Status::Running { addr, admin } => println!(
                    "octollm-desktop: running on http://{addr} (panel: {})",
                    admin.map_or("off".to_owned(), |a| format!("http://{a}"))
                ),
                other => println!("octollm-desktop: {}", menu::status_line(other, None)),
            }
            if let Some(tray) = &self.tray {
                if let Ok(icon) = tray_icon_for(&status) {
                    let _ = tray.set_icon(Some(icon));
                }
                let _ = tray.set_tooltip(Some(menu::tooltip(&status)));
            }
            if matches!(status, Status::Running { .. }) && !self.open_at_start.is_empty() {
                for w in std::mem::take(&mut self.open_at_start) {
                    let action = match w.as_str() {
                        "panel" => Action::OpenPanel,
                        "logs" => Action::ViewLogs,
                        _ => continue,
                    };
                    let _ = self.proxy.send_event(UserEvent::Menu(action.id().into()));
                }
            }
            self.last_status = Some(status);
        }
        if let Some(line) = items.first()
            && self
                .status_item
                .as_ref()
                .is_some_and(|e| e.text() != line.label)
        {
            println!("octollm-desktop: status: {}", line.label);
        }
        for item in items {
            let entry = match item.action {
                None => self.status_item.as_ref(),
                Some(a) => self.items.get(a.id()),
            };
            if let Some(entry) = entry {
                entry.set_text(&item.label);
                entry.set_enabled(item.enabled);
            }
        }
    }

    fn apply(
        &mut self,
        effect: Effect,
        target: &EventLoopWindowTarget<UserEvent>,
        flow: &mut ControlFlow,
    ) {
        match effect {
            Effect::None => {}
            Effect::OpenPanel(url) => {
                if let Some(v) = &self.panel {
                    let _ = v.webview.load_url(&url);
                    v.window.set_focus();
                    return;
                }
                let proxy = self.proxy.clone();
                let builder = WebViewBuilder::new()
                    .with_url(&url)
                    .with_on_page_load_handler(move |e, url| {
                        if matches!(e, PageLoadEvent::Finished) {
                            let _ = proxy.send_event(UserEvent::PanelLoaded(url));
                        }
                    });
                match open_window(target, "OctoLLM", (1200.0, 800.0), (20.0, 50.0), builder) {
                    Ok(v) => self.panel = Some(v),
                    Err(e) => tracing::error!(error = %e, "cannot open the panel window"),
                }
            }
            Effect::ShowLogs => {
                if let Some(v) = &self.logs {
                    v.window.set_focus();
                    return;
                }
                let (backlog, _) = self.app.logs.subscribe();
                self.logs_seen = backlog.last().map_or(0, |l| l.seq);
                let texts: Vec<String> = backlog.into_iter().map(|l| l.text).collect();
                let html = LOG_HTML.replace("/*BACKLOG*/[]", &json_strings(&texts));
                let builder = WebViewBuilder::new().with_html(html);
                // Beside the panel on a wide screen, else over it.
                let wide = target
                    .primary_monitor()
                    .is_some_and(|m| m.size().to_logical::<f64>(m.scale_factor()).width >= 1900.0);
                let pos = if wide { (1240.0, 50.0) } else { (80.0, 120.0) };
                match open_window(target, "OctoLLM logs", (660.0, 800.0), pos, builder) {
                    Ok(v) => self.logs = Some(v),
                    Err(e) => tracing::error!(error = %e, "cannot open the log window"),
                }
            }
            Effect::OpenFile(path) => open_file(&path),
            Effect::Notice(msg) => {
                tracing::warn!("{msg}");
                if let Some(tray) = &self.tray {
                    let _ = tray.set_tooltip(Some(format!("OctoLLM: {msg}")));
                }
            }
            Effect::Quit => {
                println!("octollm-desktop: quit (the gateway has drained)");
                self.panel = None;
                self.logs = None;
                self.tray = None;
                *flow = ControlFlow::Exit;
            }
        }
    }

    fn close(&mut self, id: WindowId) {
        if self.panel.as_ref().is_some_and(|v| v.window.id() == id) {
            self.panel = None;
        }
        if self.logs.as_ref().is_some_and(|v| v.window.id() == id) {
            self.logs = None;
        }
    }
}

fn tray_icon_for(status: &Status) -> Result<Icon, tray_icon::BadIcon> {
    Icon::from_rgba(icon::rgba(status), icon::SIZE, icon::SIZE)
}

/// A window of `size` at `pos` (logical pixels) holding the web view `builder` makes.
fn open_window(
    target: &EventLoopWindowTarget<UserEvent>,
    title: &str,
    size: (f64, f64),
    pos: (f64, f64),
    builder: WebViewBuilder<'_>,
) -> Result<View, Box<dyn std::error::Error>> {
    let window = WindowBuilder::new()
        .with_title(title)
        .with_inner_size(tao::dpi::LogicalSize::new(size.0, size.1))
        .with_position(tao::dpi::LogicalPosition::new(pos.0, pos.1))
        .build(target)?;
    #[cfg(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    let webview = {
        use tao::platform::unix::WindowExtUnix;
        use wry::WebViewBuilderExtUnix;
        let vbox = window
            .default_vbox()
            .ok_or("the window has no GTK container")?;
        builder.build_gtk(vbox)?
    };
    #[cfg(not(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    )))]
    let webview = builder.build(&window)?;
    Ok(View { window, webview })
}

/// Opens `path` with the system's default application.
fn open_file(path: &std::path::Path) {
    #[cfg(target_os = "macos")]
    let mut cmd = std::process::Command::new("open");
    #[cfg(target_os = "windows")]
    let mut cmd = {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    };
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    let mut cmd = std::process::Command::new("xdg-open");
    match cmd.arg(path).spawn() {
        Ok(_) => tracing::info!(file = %path.display(), "opened the config"),
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "cannot open the config; edit the file yourself, then choose Restart"
        ),
    }
}

/// `lines` as a JavaScript array literal.
fn json_strings(lines: &[String]) -> String {
    let mut out = String::from("[");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in l.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '<' => out.push_str("\\u003c"),
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// The log window: the backlog, then live lines; follows the end unless scrolled up.
const LOG_HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>OctoLLM logs</title>
<style>
  :root { color-scheme: light dark; }
  body { margin: 0; font: 12px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; background: #0d1117; color: #c9d1d9; }
  header { position: sticky; top: 0; padding: 6px 10px; background: #161b22; border-bottom: 1px solid #30363d; font-family: system-ui, sans-serif; }
  #log { margin: 0; padding: 8px 10px; white-space: pre-wrap; word-break: break-all; }
  .warn { color: #d29922; } .error { color: #f85149; } .access { color: #7ee787; }
</style></head>
<body><header>OctoLLM gateway log · live</header><pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  function append(lines) {
    const follow = innerHeight + scrollY >= document.body.scrollHeight - 30;
    for (const l of lines) {
      const div = document.createElement("div");
      div.textContent = l;
      if (/ WARN /.test(l)) div.className = "warn";
      else if (/ ERROR /.test(l)) div.className = "error";
      else if (/octollm::access/.test(l)) div.className = "access";
      log.appendChild(div);
    }
    while (log.childNodes.length > 5000) log.removeChild(log.firstChild);
    if (follow) scrollTo(0, document.body.scrollHeight);
  }
  append(/*BACKLOG*/[]);
</script></body></html>
"#;
