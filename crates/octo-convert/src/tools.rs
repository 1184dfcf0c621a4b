//! What the response side must remember about the client's tools: the shape each tool was declared
//! in ([`ToolMap`]) and the tool names shortened for the upstream ([`NameMap`]).

use crate::canonical::{CanonicalRequest, CanonicalResponse, Part, ToolChoice, ToolOrigin};
use crate::ids;

/// The client's tools that are not plain function tools (Responses `custom` and namespaced
/// tools), by the function name the upstream sees, so calls go back to the client in its shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolMap {
    pub(crate) tools: Vec<(String, ToolOrigin)>,
}

impl ToolMap {
    pub(crate) fn from_request(r: &CanonicalRequest) -> ToolMap {
        ToolMap {
            tools: r
                .tools
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.origin.clone()?)))
                .collect(),
        }
    }

    /// How the client declared the tool the upstream calls `name`.
    pub(crate) fn origin(&self, name: &str) -> Option<&ToolOrigin> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }
}

/// Tool names shortened for the upstream, and the way back.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameMap {
    /// `(short, original)`.
    pairs: Vec<(String, String)>,
}

impl NameMap {
    /// Shortens every tool name the upstream would refuse, everywhere it appears.
    pub(crate) fn shorten(r: &mut CanonicalRequest) -> NameMap {
        let mut map = NameMap::default();
        let mut fix = |name: &mut String| {
            if let Some(short) = ids::short_name(name) {
                if !map.pairs.iter().any(|(s, _)| *s == short) {
                    map.pairs.push((short.clone(), name.clone()));
                }
                *name = short;
            }
        };
        for t in &mut r.tools {
            fix(&mut t.name);
        }
        match &mut r.tool_choice {
            Some(ToolChoice::Tool(name)) => fix(name),
            Some(ToolChoice::Allowed { names, .. }) => names.iter_mut().for_each(&mut fix),
            _ => {}
        }
        for m in &mut r.messages {
            for p in &mut m.parts {
                match p {
                    Part::ToolCall(c) => fix(&mut c.name),
                    Part::ToolResult(res) => {
                        if let Some(n) = res.name.as_mut() {
                            fix(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        map
    }

    /// Puts the original name back.
    pub(crate) fn restore(&self, name: &mut String) {
        if let Some((_, original)) = self.pairs.iter().find(|(s, _)| s == name) {
            name.clone_from(original);
        }
    }

    /// Puts the original names back in every tool call of `r`.
    pub(crate) fn restore_response(&self, r: &mut CanonicalResponse) {
        if self.pairs.is_empty() {
            return;
        }
        for p in &mut r.parts {
            if let Part::ToolCall(c) = p {
                self.restore(&mut c.name);
            }
        }
    }
}
