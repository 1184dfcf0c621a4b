//! The tray menu as data, and what each item does.
//!
//! [`items`] computes the menu from the gateway's [`Status`] and [`Today`]'s figures: a status
//! line (listen address, requests today, cost today; or "Stopped"; or "Failing: " and the error), then
//! Start, Stop, Restart, Open Panel, View Logs, Open Config and Quit with their enabled states.
//! The tray redraws from it; the tests check it without a display. [`App::dispatch`] performs an
//! action: the lifecycle ones on the in-process gateway, the others answer an [`Effect`] for the
//! UI to show (a window, a file, the exit).

use std::sync::Arc;

use crate::gateway::{Gateway, Status, Today};
use crate::logs::LogHub;

/// A menu action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start the gateway.
    Start,
    /// Stop it (graceful drain).
    Stop,
    /// Stop and start again, re-reading the config.
    Restart,
    /// Open the web panel in a window, signed in.
    OpenPanel,
    /// Open the live log window.
    ViewLogs,
    /// Open `config.yaml` in the system's editor.
    OpenConfig,
    /// Stop the gateway and exit.
    Quit,
}

impl Action {
    /// Every action, in menu order.
    pub const ALL: [Action; 7] = [
        Action::Start,
        Action::Stop,
        Action::Restart,
        Action::OpenPanel,
        Action::ViewLogs,
        Action::OpenConfig,
        Action::Quit,
    ];

    /// A stable id (the tray menu item's id).
    pub fn id(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::OpenPanel => "open-panel",
            Action::ViewLogs => "view-logs",
            Action::OpenConfig => "open-config",
            Action::Quit => "quit",
        }
    }

    /// The action with this [`id`](Self::id).
    pub fn from_id(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.id() == id)
    }

    /// The menu label.
    pub fn label(self) -> &'static str {
        match self {
            Action::Start => "Start",
            Action::Stop => "Stop",
            Action::Restart => "Restart",
            Action::OpenPanel => "Open Panel",
            Action::ViewLogs => "View Logs",
            Action::OpenConfig => "Open Config",
            Action::Quit => "Quit",
        }
    }

    /// Whether the action makes sense in `status`.
    pub fn enabled(self, status: &Status) -> bool {
        match self {
            Action::Start => !matches!(status, Status::Running { .. }),
            Action::Stop => !matches!(status, Status::Stopped),
            Action::Restart => !matches!(status, Status::Stopped),
            Action::OpenPanel => matches!(status, Status::Running { admin: Some(_), .. }),
            Action::ViewLogs | Action::OpenConfig | Action::Quit => true,
        }
    }
}

/// One menu entry: the status line (no action, never enabled) or an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    /// What it does; `None` for the status line.
    pub action: Option<Action>,
    /// Its text.
    pub label: String,
    /// Whether it can be chosen.
    pub enabled: bool,
}

/// The longest error text on the status line (the tooltip and log have all of it).
pub const MAX_ERROR_CHARS: usize = 90;

/// The status line: `Running on 127.0.0.1:8080 · 12 requests today · $0.04`, `Stopped`, or
/// `Failing: ` and the error (shortened to [`MAX_ERROR_CHARS`]).
pub fn status_line(status: &Status, today: Option<&Today>) -> String {
    match status {
        Status::Stopped => "Stopped".into(),
        Status::Failing(e) => {
            let one_line = e.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = one_line.chars().take(MAX_ERROR_CHARS).collect();
            if short.len() < one_line.len() {
                format!("Failing: {short}…")
            } else {
                format!("Failing: {short}")
            }
        }
        Status::Running { addr, .. } => {
            let mut s = format!("Running on {addr}");
            if let Some(t) = today {
                let plural = if t.requests == 1 { "" } else { "s" };
                s.push_str(&format!(" · {} request{plural} today", t.requests));
                if let Some(cost) = t.cost_usd {
                    s.push_str(&format!(" · {}", dollars(cost)));
                }
            }
            s
        }
    }
}

/// `$0.0042`, `$1.25`: four decimals under a dollar, two above.
pub fn dollars(usd: f64) -> String {
    if usd < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// The whole menu for `status`.
pub fn items(status: &Status, today: Option<&Today>) -> Vec<MenuItem> {
    let mut out = vec![MenuItem {
        action: None,
        label: status_line(status, today),
        enabled: false,
    }];
    out.extend(Action::ALL.into_iter().map(|a| MenuItem {
        action: Some(a),
        label: a.label().into(),
        enabled: a.enabled(status),
    }));
    out
}

/// The tray icon's tooltip: the product, the state, and the full error when failing.
pub fn tooltip(status: &Status) -> String {
    match status {
        Status::Failing(e) => format!("OctoLLM: failing\n{e}"),
        Status::Running { addr, .. } => format!("OctoLLM: running on {addr}"),
        Status::Stopped => "OctoLLM: stopped".into(),
    }
}

/// What the UI has to do after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more (the status changed; the tray redraws from the watch channel).
    None,
    /// Show the web panel at this URL (a one-time sign-in link).
    OpenPanel(String),
    /// Show the log window.
    ShowLogs,
    /// Open this file with the system's default application.
    OpenFile(std::path::PathBuf),
    /// Say this to the user (e.g. why the panel cannot open).
    Notice(String),
    /// Exit the event loop (the gateway has been stopped).
    Quit,
}

/// The app's state behind the tray: the gateway and the log stream.
#[derive(Debug, Clone)]
pub struct App {
    /// The in-process gateway.
    pub gateway: Arc<Gateway>,
    /// Its log lines.
    pub logs: Arc<LogHub>,
}

impl App {
    /// Performs `action`: Start, Stop, Restart and Quit act on the gateway (and wait for it);
    /// the others return what to show. A disabled action does nothing.
    pub async fn dispatch(&self, action: Action) -> Effect {
        if !action.enabled(&self.gateway.status()) {
            return Effect::None;
        }
        match action {
            Action::Start => {
                self.gateway.start().await;
                Effect::None
            }
            Action::Stop => {
                self.gateway.stop().await;
                Effect::None
            }
            Action::Restart => {
                self.gateway.restart().await;
                Effect::None
            }
            Action::OpenPanel => match self.gateway.panel_link().await {
                Ok(url) => Effect::OpenPanel(url),
                Err(e) => Effect::Notice(e),
            },
            Action::ViewLogs => Effect::ShowLogs,
            Action::OpenConfig => Effect::OpenFile(self.gateway.paths().config.clone()),
            Action::Quit => {
                self.gateway.shutdown().await;
                Effect::Quit
            }
        }
    }

    /// The menu as it should be drawn now (reads today's figures from the request log).
    pub async fn menu(&self) -> Vec<MenuItem> {
        let status = self.gateway.status();
        let today = match status {
            Status::Running { .. } => self.gateway.today().await,
            _ => None,
        };
        items(&status, today.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn running(admin: bool) -> Status {
        Status::Running {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: admin.then(|| SocketAddr::from(([127, 0, 0, 1], 9000))),
        }
    }

    fn enabled(items: &[MenuItem]) -> Vec<&str> {
        items
            .iter()
            .filter(|i| i.enabled)
            .map(|i| i.label.as_str())
            .collect()
    }

    #[test]
    fn enabled_items_follow_the_status() {
        assert_eq!(
            enabled(&items(&Status::Stopped, None)),
            ["Start", "View Logs", "Open Config", "Quit"]
        );
        assert_eq!(
            enabled(&items(&running(true), None)),
            [
                "Stop",
                "Restart",
                "Open Panel",
                "View Logs",
                "Open Config",
                "Quit"
            ]
        );
        assert_eq!(
            enabled(&items(&running(false), None)),
            ["Stop", "Restart", "View Logs", "Open Config", "Quit"]
        );
        assert_eq!(
            enabled(&items(&Status::Failing("x".into()), None)),
            [
                "Start",
                "Stop",
                "Restart",
                "View Logs",
                "Open Config",
                "Quit"
            ]
        );
    }

    #[test]
    fn the_menu_has_every_item_in_order() {
        let labels: Vec<_> = items(&Status::Stopped, None)
            .into_iter()
            .map(|i| i.label)
            .collect();
        assert_eq!(
            labels,
            [
                "Stopped",
                "Start",
                "Stop",
                "Restart",
                "Open Panel",
                "View Logs",
                "Open Config",
                "Quit"
            ]
        );
        for a in Action::ALL {
            assert_eq!(Action::from_id(a.id()), Some(a));
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(&running(true), None),
            "Running on 127.0.0.1:8080"
        );
        let today = Today {
            requests: 12,
            cost_usd: Some(0.0421),
        };
        assert_eq!(
            status_line(&running(true), Some(&today)),
            "Running on 127.0.0.1:8080 · 12 requests today · $0.0421"
        );
        let one = Today {
            requests: 1,
            cost_usd: None,
        };
        assert_eq!(
            status_line(&running(true), Some(&one)),
            "Running on 127.0.0.1:8080 · 1 request today"
        );
        let long = format!("config.yaml: at `models.x`: {}", "y".repeat(200));
        let line = status_line(&Status::Failing(long.clone()), None);
        assert!(line.starts_with("Failing: config.yaml: at `models.x`: yyy"));
        assert!(line.ends_with('…'));
        assert_eq!(
            line.chars().count(),
            "Failing: ".len() + MAX_ERROR_CHARS + 1
        );
        assert!(tooltip(&Status::Failing(long.clone())).ends_with(&long));
        assert_eq!(dollars(12.345), "$12.35");
    }
}
